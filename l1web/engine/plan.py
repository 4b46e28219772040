"""Phase 2, plan: every step of a DAG with its cache id, media kind and level, as plain data.

A plan is a JSON-ready dict (it travels through RQ's JSON serializer):

    {"plan_id", "version", "output", "output_cache_id", "steps": [step...], "levels": [[id...]]}

and a step is

    {"step_id", "node_id", "type", "config", "inputs", "input_cache_ids", "input_kinds",
     "kind", "cache_id", "encoder", "level"}   (SOURCE steps have no "encoder")

Steps are listed inputs first; steps of one level only depend on lower levels, so they can
run in parallel. A SEQUENCE of more than MAX_SEQUENCE_FANIN inputs becomes a balanced tree
of SEQUENCE steps (`<node>~<depth>.<index>`), the last one keeping the node's id.
"""

from __future__ import annotations

from l1web.engine.cache_ids import cache_id, executor_version
from l1web.engine.canonical import sha3_json
from l1web.engine.dag import Dag, Node, topological_order, validate
from l1web.engine.encoding import encoder_version
from l1web.engine.errors import DagError
from l1web.engine.kinds import output_kind

#: Bump when the plan layout changes: plan ids then change too.
PLAN_VERSION = "1"
#: Most inputs one SEQUENCE step joins; longer ones are reduced as a tree.
MAX_SEQUENCE_FANIN = 8


def plan(dag: Dag, analysis: dict[str, dict]) -> dict:
    """The plan for `dag`, given `analyze`'s results for its sources (by content hash)."""
    checked = validate(dag)
    steps: dict[str, dict] = {}
    for node_id in topological_order(checked):
        node = checked.nodes[node_id]
        if node.type == "SOURCE":
            _add(steps, _source_step(node, analysis))
            continue
        kinds = [steps[i]["kind"] for i in node.inputs]
        kind = output_kind(node, kinds)
        if node.type == "SEQUENCE" and len(node.inputs) > MAX_SEQUENCE_FANIN:
            _reduce_sequence(steps, node, kind)
        else:
            _add(steps, _step(node.id, node, list(node.inputs), steps, kind))
    return _finish(list(steps.values()), checked.output)


def _add(steps: dict[str, dict], step: dict) -> None:
    steps[step["step_id"]] = step


def _source_step(node: Node, analysis: dict[str, dict]) -> dict:
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


def _step(step_id: str, node: Node, inputs: list[str], steps: dict[str, dict],
          kind: str) -> dict:
    upstream = [steps[i] for i in inputs]
    input_ids = [s["cache_id"] for s in upstream]
    version = executor_version(node.type, node.config)
    return {
        "step_id": step_id, "node_id": node.id, "type": node.type, "config": node.config,
        "inputs": inputs, "input_cache_ids": input_ids,
        "input_kinds": [s["kind"] for s in upstream], "kind": kind,
        "cache_id": cache_id(node.type, node.config, input_ids, version),
        "encoder": encoder_version(),  # what the cache id promises; the renderer checks it
        "level": 1 + max(s["level"] for s in upstream),
    }


def _reduce_sequence(steps: dict[str, dict], node: Node, kind: str) -> None:
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


def _finish(steps: list[dict], output: str) -> dict:
    levels: list[list[str]] = [[] for _ in range(1 + max(s["level"] for s in steps))]
    for step in steps:
        levels[step["level"]].append(step["step_id"])
    by_id = {s["step_id"]: s for s in steps}
    body = {"version": PLAN_VERSION, "output": output, "steps": steps}
    return {
        "plan_id": sha3_json(body), **body,
        "output_cache_id": by_id[output]["cache_id"], "levels": levels,
    }
