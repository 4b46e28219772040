"""Phase 2, plan: every step of a DAG with its cache id, media kind and level, as plain data.

A plan is a JSON-ready dict (it travels through RQ's JSON serializer):

    {"plan_id", "version", "output", "output_cache_id", "steps": [step...], "levels": [[id...]]}

and a step is

    {"step_id", "node_id", "type", "config", "inputs", "input_cache_ids", "input_kinds",
     "kind", "cache_id", "encoder", "level"}   (SOURCE steps have no "encoder")

Steps are listed inputs first; steps of one level only depend on lower levels, so they can
run in parallel. A SEQUENCE of more than MAX_SEQUENCE_FANIN inputs becomes a balanced tree
of SEQUENCE steps (`<node>~<depth>.<index>`), the last one keeping the node's id.

With a `Chunking` setting, a frame-wise step on a long video becomes chunk steps
(`<node>~c<i>`, with `"frames": [start, end]` and `"chunk": {"of", "index", "count"}`) and a
join step keeping the node's id (`"join": {"chunks": [ids], "frames": [ranges], "seconds": s}`, inputs = the chunks
then the node's own inputs, whose sound it adds once); see engine/chunks.py.

Each step's three facts are made here, below `plan`:

- **Cache id**: what makes two steps the same computation.

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
- **Media kind** ("image", "video" or "audio") each node makes from the kinds it is given, checked
  before any rendering: a node handed a kind it cannot handle is refused with a DagError naming
  the node, the field and the kinds involved.
- **Level**: one more than its highest input's.
"""

from __future__ import annotations

from typing import Any

from l1web.engine import chunks
from l1web.engine.canonical import sha3_json
from l1web.engine.dag import Dag, Node, topological_order, validate
from l1web.engine.encoding import encoder_version
from l1web.engine.errors import DagError
from l1web.engine.node_types import NODE_TYPES, TRANSFORM_EFFECTS
from l1web.engine.schema import Config

#: Bump when the plan layout changes: plan ids then change too.
PLAN_VERSION = "1"
#: Most inputs one SEQUENCE step joins; longer ones are reduced as a tree.
MAX_SEQUENCE_FANIN = 8

#: A plan and one of its steps: JSON-ready dicts of the shapes above (they travel through RQ).
Plan = dict[str, Any]
Step = dict[str, Any]


def plan(dag: Dag, analysis: dict[str, dict[str, Any]], chunking: chunks.Chunking = chunks.OFF) -> Plan:
    """The plan for `dag`, given `analyze`'s results for its sources (by content hash).

    `chunking` splits frame-wise steps on long videos into chunks (engine/chunks.py); the
    default plans every step in one piece.
    """
    checked = validate(dag)
    steps: dict[str, Step] = {}
    facts: dict[str, chunks.Facts | None] = {}  # the video each node outputs, when known
    for node_id in topological_order(checked):
        node = checked.nodes[node_id]
        if node.type == "SOURCE":
            _add(steps, _source_step(node, analysis))
            facts[node.id] = chunks.source_facts(analysis[node.config["hash"]]["media"])
            continue
        kinds = [steps[i]["kind"] for i in node.inputs]
        kind = output_kind(node, kinds)
        wise = chunks.frame_wise(node.type, node.config, kinds, [facts[i] for i in node.inputs])
        facts[node.id] = wise
        ranges: list[tuple[int, int | None]] = chunks.boundaries(wise, chunking) if wise else [(0, None)]
        if node.type == "SEQUENCE" and len(node.inputs) > MAX_SEQUENCE_FANIN:
            _reduce_sequence(steps, node, kind)
        elif len(ranges) > 1:
            _chunked(steps, node, kind, ranges, chunking)
        else:
            _add(steps, _step(node.id, node, list(node.inputs), steps, kind))
    return _finish(list(steps.values()), checked.output)


def _chunked(steps: dict[str, Step], node: Node, kind: str, ranges: list[tuple[int, int | None]],
             chunking: chunks.Chunking) -> None:
    """Chunk steps over `ranges`, then the join step under the node's own id."""
    ids = []
    for index, (start, end) in enumerate(ranges):
        step_id = chunks.chunk_step_id(node.id, index)
        step = _step(step_id, node, list(node.inputs), steps, kind,
                     chunk={"frames": [start, end]})
        step.update(frames=[start, end], chunk={"of": node.id, "index": index, "count": len(ranges)})
        _add(steps, step)
        ids.append(step_id)
    whole = _step(node.id, node, list(node.inputs), steps, kind, chunk=chunking.cache_part())
    parts = [steps[i] for i in ids]
    whole.update(
        inputs=[*ids, *node.inputs],
        input_cache_ids=[*(s["cache_id"] for s in parts), *whole["input_cache_ids"]],
        input_kinds=[*(s["kind"] for s in parts), *whole["input_kinds"]],
        level=1 + max(s["level"] for s in parts),
        join={"chunks": ids, "frames": [list(r) for r in ranges], **chunking.cache_part()},
    )
    _add(steps, whole)


def _add(steps: dict[str, Step], step: Step) -> None:
    steps[step["step_id"]] = step


def _source_step(node: Node, analysis: dict[str, dict[str, Any]]) -> Step:
    digest = node.config["hash"]
    if digest is None:
        raise DagError("SOURCE has no content hash: resolve inputs before planning",
                       node=node.id, field="hash")
    if digest not in analysis:
        raise DagError("no analysis for this input: run analyze first", node=node.id,
                       field="hash")
    return {
        "step_id": node.id, "node_id": node.id, "type": "SOURCE", "config": node.config,
        "inputs": [], "input_cache_ids": [], "input_kinds": [],
        "kind": analysis[digest]["media"]["kind"], "cache_id": digest, "level": 0,
    }


def _step(step_id: str, node: Node, inputs: list[str], steps: dict[str, Step],
          kind: str, *, chunk: dict[str, Any] | None = None) -> Step:
    upstream = [steps[i] for i in inputs]
    input_ids = [s["cache_id"] for s in upstream]
    version = executor_version(node.type, node.config)
    return {
        "step_id": step_id, "node_id": node.id, "type": node.type, "config": node.config,
        "inputs": inputs, "input_cache_ids": input_ids,
        "input_kinds": [s["kind"] for s in upstream], "kind": kind,
        "cache_id": cache_id(node.type, node.config, input_ids, version, chunk=chunk),
        "encoder": encoder_version(),  # what the cache id promises; the renderer checks it
        "level": 1 + max(s["level"] for s in upstream),
    }


def _reduce_sequence(steps: dict[str, Step], node: Node, kind: str) -> None:
    layer, depth = list(node.inputs), 0
    while len(layer) > MAX_SEQUENCE_FANIN:
        groups = balanced_groups(layer, MAX_SEQUENCE_FANIN)
        layer = []
        for index, group in enumerate(groups):
            step_id = f"{node.id}~{depth}.{index}"
            _add(steps, _step(step_id, node, group, steps, kind))
            layer.append(step_id)
        depth += 1
    _add(steps, _step(node.id, node, layer, steps, kind))


def balanced_groups(items: list[str], most: int) -> list[list[str]]:
    """`items` split in order into the fewest groups of at most `most`, sizes differing ≤ 1."""
    count = -(-len(items) // most)
    size, extra = divmod(len(items), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(items[start:end])
        start = end
    return groups


def _finish(steps: list[Step], output: str) -> Plan:
    levels: list[list[str]] = [[] for _ in range(1 + max(s["level"] for s in steps))]
    for step in steps:
        levels[step["level"]].append(step["step_id"])
    by_id = {s["step_id"]: s for s in steps}
    body = {"version": PLAN_VERSION, "output": output, "steps": steps}
    return {
        "plan_id": sha3_json(body), **body,
        "output_cache_id": by_id[output]["cache_id"], "levels": levels,
    }


# Cache ids -------------------------------------------------------------------------------------
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


# Media kinds -----------------------------------------------------------------------------------
def output_kind(node: Node, kinds: list[str]) -> str:
    """The kind `node` outputs given its inputs' kinds, or DagError."""
    return _RULES[node.type](node, kinds)


def _refuse(node: Node, message: str, field: str = "inputs") -> DagError:
    return DagError(message, node=node.id, field=field)


def _only(node: Node, kinds: list[str], allowed: tuple[str, ...]) -> str:
    for index, kind in enumerate(kinds):
        if kind not in allowed:
            raise _refuse(node, f"{node.type} cannot take {kind} input (input {index}); "
                                f"it takes {' or '.join(allowed)}")
    return kinds[0]


def _segment(node: Node, kinds: list[str]) -> str:
    return _only(node, kinds, ("video", "audio"))


def _resize(node: Node, kinds: list[str]) -> str:
    return _only(node, kinds, ("video", "image"))


def _transform(node: Node, kinds: list[str]) -> str:
    kind, fx = kinds[0], node.config["effects"]
    if kind == "image" and fx["speed"] != 1:
        raise _refuse(node, "speed needs video or audio, the input is an image",
                      "effects.speed")
    if kind == "audio":
        for key, spec in TRANSFORM_EFFECTS.items():
            if key != "speed" and fx[key] != spec.default:
                raise _refuse(node, "only speed applies to audio input", f"effects.{key}")
    return kind


def _sequence(node: Node, kinds: list[str]) -> str:
    if kinds[0] == "audio":
        return _only(node, kinds, ("audio",))
    return _only(node, kinds, ("video",))


def _composite(node: Node, kinds: list[str]) -> str:
    _only(node, kinds, ("video", "image"))
    if kinds[0] == "image" and "video" in kinds:
        raise _refuse(node, f"{node.type} over an image base cannot take video layers; "
                            "put the video first")
    return kinds[0]


def _mux(node: Node, kinds: list[str]) -> str:
    video, audio = node.config["video_stream"], node.config["audio_stream"]
    if kinds[video] != "video":
        raise _refuse(node, f"input {video} is {kinds[video]}, MUX needs video", "video_stream")
    if kinds[audio] not in ("video", "audio"):
        raise _refuse(node, f"input {audio} is {kinds[audio]}, MUX needs sound",
                      "audio_stream")
    return "video"


def _audio_mix(node: Node, kinds: list[str]) -> str:
    _only(node, kinds, ("audio", "video"))
    return "audio"


def _effect(node: Node, kinds: list[str]) -> str:
    from l1web.engine.effects import EffectError, get_effect

    if kinds[0] not in ("image", "video"):
        raise _refuse(node, f"effects take an image or a video, the input is {kinds[0]}")
    try:
        get_effect(node.config["effect"]).check_kind(kinds[0])
    except EffectError as exc:
        raise _refuse(node, str(exc), "effect") from None
    return kinds[0]


_RULES = {
    "SEGMENT": _segment, "RESIZE": _resize, "TRANSFORM": _transform, "SEQUENCE": _sequence,
    "LAYER": _composite, "BLEND": _composite, "MUX": _mux, "AUDIO_MIX": _audio_mix,
    "EFFECT": _effect,
}
