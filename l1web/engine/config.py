"""Filling a node's config: the type's schema, the rules that span keys, and effect params."""

from __future__ import annotations

from l1web.engine.errors import DagError
from l1web.engine.node_types import NODE_TYPES
from l1web.engine.schema import Config, fill


def fill_config(node_id: str, node_type: str, config: object, n_inputs: int) -> Config:
    """The validated config with defaults filled in (the form hashed into cache ids)."""
    filled = fill(NODE_TYPES[node_type].schema, config, node=node_id, n_inputs=n_inputs)
    check = _CROSS_CHECKS.get(node_type)
    return check(node_id, filled, n_inputs) if check else filled


def _sequence(node_id: str, config: Config, n_inputs: int) -> Config:
    explicit = config["target_size"] == "explicit"
    for key in ("width", "height"):
        if explicit and config[key] is None:
            raise DagError("is required when target_size is explicit", node=node_id, field=key)
        if not explicit and config[key] is not None:
            raise DagError("is only used when target_size is explicit", node=node_id,
                           field=key)
    return config


def _mux(node_id: str, config: Config, n_inputs: int) -> Config:
    for key in ("video_stream", "audio_stream"):
        if config[key] >= n_inputs:
            raise DagError(f"index {config[key]} but the node has {n_inputs} inputs",
                           node=node_id, field=key)
    return config


def _effect(node_id: str, config: Config, n_inputs: int) -> Config:
    # The effect's own schema checks its params; the config names it by hash so that
    # spelling it by name or by hash gives the same cache id.
    from l1web.engine.effects import EffectError, get_effect

    try:
        effect = get_effect(config["effect"])
    except EffectError as exc:
        raise DagError(str(exc), node=node_id, field="effect") from None
    try:
        params = effect.resolve_params(config["params"])
    except EffectError as exc:
        raise DagError(str(exc), node=node_id, field="params") from None
    return {"effect": effect.hash, "params": params}


_CROSS_CHECKS = {"SEQUENCE": _sequence, "MUX": _mux, "EFFECT": _effect}
