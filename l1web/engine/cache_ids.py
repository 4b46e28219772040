"""Cache ids: what makes two steps the same computation.

    cache_id = SHA3-256( canonical_json({
        "type": <node type>,
        "config": <config with every default filled in>,
        "inputs": [<cache id of each input, in input order>],
        "version": {"executor": <type version, or the effect's version hash>,
                    "encoder": <encoder_version(): ENCODER_VERSION with the default PNG_ENCODING>},
    }))

A SOURCE's cache id is the content hash of its file. Inputs keep their order, so
SEQUENCE [a, b] and [b, a] differ; the version pins the code and encoder settings, so
changing an effect changes its id and every id downstream of it.
"""

from __future__ import annotations

from typing import Any

from l1web.engine.canonical import sha3_json
from l1web.engine.encoding import encoder_version
from l1web.engine.node_types import NODE_TYPES
from l1web.engine.schema import Config


def executor_version(node_type: str, config: Config) -> str:
    """The version of the code that runs this node: the effect's own for EFFECT."""
    if node_type == "EFFECT":
        from l1web.engine.effects import get_effect

        return get_effect(config["effect"]).version
    return f"{node_type}/{NODE_TYPES[node_type].version}"


def cache_id(node_type: str, config: Config, input_ids: list[str], version: str, *,
             chunk: dict[str, Any] | None = None) -> str:
    """The cache id of a step from its filled config, its inputs' ids and executor version.

    `chunk` is set only on chunked steps (engine/chunks.py): `{"frames": [start, end]}` names one
    chunk's frames, `{"seconds": s}` the joined whole made with that chunk setting. Steps that
    are not chunked hash exactly as before, so their ids do not change.
    """
    body = {
        "type": node_type,
        "config": config,
        "inputs": list(input_ids),
        "version": {"executor": version, "encoder": encoder_version()},
    }
    if chunk is not None:
        body["chunk"] = chunk
    return sha3_json(body)
