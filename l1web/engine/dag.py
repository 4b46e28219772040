"""The DAG model: nodes `{id, type, config, inputs}` with one output, and its validation.

`parse_dag` turns untrusted plain data into a `Dag`; `validate` checks it completely and
returns the same DAG with every config filled with its defaults. Every problem is a `DagError`
naming the node and the field, raised at the first problem found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from l1web.engine.errors import DagError
from l1web.engine.node_types import MAX_INPUTS, NODE_TYPES
from l1web.engine.schema import Config, fill

#: Most nodes a DAG may have.
MAX_NODES = 256
#: Node ids: short, printable, no path or template characters (plan steps add `~`).
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class Node:
    """One operation. `inputs` are node ids, in order: order matters to most types."""

    id: str
    type: str
    config: Config = field(default_factory=dict)
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dag:
    """Nodes by id (in the order given) and the id of the one output node."""

    nodes: dict[str, Node]
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [
                {"id": n.id, "type": n.type, "config": n.config, "inputs": list(n.inputs)}
                for n in self.nodes.values()
            ],
            "output": self.output,
        }


def parse_dag(data: object) -> Dag:
    """A `Dag` from plain data `{"nodes": [...], "output": id}`; structure errors only."""
    if not isinstance(data, dict):
        raise DagError("a DAG must be a mapping with 'nodes' and 'output'")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise DagError("'nodes' must be a non-empty list", field="nodes")
    if len(raw_nodes) > MAX_NODES:
        raise DagError(f"too many nodes: {len(raw_nodes)} > {MAX_NODES}", field="nodes")
    nodes: dict[str, Node] = {}
    for index, raw in enumerate(raw_nodes):
        node = _parse_node(raw, index)
        if node.id in nodes:
            raise DagError("duplicate node id", node=node.id, field="id")
        nodes[node.id] = node
    output = data.get("output")
    if not isinstance(output, str) or not output:
        raise DagError("no output node named", field="output")
    return Dag(nodes, output)


def _parse_node(raw: object, index: int) -> Node:
    if not isinstance(raw, dict):
        raise DagError(f"node #{index} must be a mapping", field="nodes")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not NODE_ID_RE.fullmatch(node_id):
        raise DagError(f"node #{index} needs an id of 1-64 letters, digits, '_', '.' or '-' "
                       "(not starting with '.' or '-')", field="id")
    unknown = sorted(set(raw) - {"id", "type", "config", "inputs"})
    if unknown:
        raise DagError("unknown node key", node=node_id, field=unknown[0])
    node_type, config, inputs = raw.get("type"), raw.get("config", {}), raw.get("inputs", [])
    if not isinstance(node_type, str):
        raise DagError("type must be a string", node=node_id, field="type")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise DagError("inputs must be a list of node ids", node=node_id, field="inputs")
    if config is None:
        config = {}
    return Node(node_id, node_type, config, tuple(inputs))


def validate(dag: Dag) -> Dag:
    """The DAG with filled configs, or DagError for the first problem found."""
    if dag.output not in dag.nodes:
        raise DagError(f"output node {dag.output!r} is not in the DAG", field="output")
    filled = {node_id: _validate_node(dag, node) for node_id, node in dag.nodes.items()}
    checked = Dag(filled, dag.output)
    topological_order(checked)
    return checked


def _validate_node(dag: Dag, node: Node) -> Node:
    spec = NODE_TYPES.get(node.type)
    if spec is None:
        known = ", ".join(NODE_TYPES)
        raise DagError(f"unknown node type {node.type!r} (known: {known})", node=node.id,
                       field="type")
    count = len(node.inputs)
    if not spec.min_inputs <= count <= min(spec.max_inputs, MAX_INPUTS):
        bounds = (f"exactly {spec.min_inputs}" if spec.min_inputs == spec.max_inputs
                  else f"{spec.min_inputs} to {spec.max_inputs}")
        raise DagError(f"{node.type} takes {bounds} inputs, got {count}", node=node.id,
                       field="inputs")
    for ref in node.inputs:
        if ref not in dag.nodes:
            raise DagError(f"input {ref!r} is not a node of the DAG", node=node.id,
                           field="inputs")
    return replace(node, config=fill_config(node.id, node.type, node.config, count))


# Filling a node's config: the type's schema, the rules that span keys, and effect params.


def fill_config(node_id: str, node_type: str, config: object, n_inputs: int) -> Config:
    """The validated config with defaults filled in (the form hashed into cache ids)."""
    filled = fill(NODE_TYPES[node_type].schema, config, node=node_id, n_inputs=n_inputs)
    check = _CROSS_CHECKS.get(node_type)
    return check(node_id, filled, n_inputs) if check else filled


def _check_sequence(node_id: str, config: Config, n_inputs: int) -> Config:
    explicit = config["target_size"] == "explicit"
    for key in ("width", "height"):
        if explicit and config[key] is None:
            raise DagError("is required when target_size is explicit", node=node_id, field=key)
        if not explicit and config[key] is not None:
            raise DagError("is only used when target_size is explicit", node=node_id,
                           field=key)
    return config


def _check_mux(node_id: str, config: Config, n_inputs: int) -> Config:
    for key in ("video_stream", "audio_stream"):
        if config[key] >= n_inputs:
            raise DagError(f"index {config[key]} but the node has {n_inputs} inputs",
                           node=node_id, field=key)
    return config


def _check_effect(node_id: str, config: Config, n_inputs: int) -> Config:
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


_CROSS_CHECKS = {"SEQUENCE": _check_sequence, "MUX": _check_mux, "EFFECT": _check_effect}


def topological_order(dag: Dag) -> list[str]:
    """Ids of the nodes the output depends on, inputs first; DagError names a node on a cycle.

    Nodes the output does not depend on are left out: they would be work nobody sees.
    """
    order: list[str] = []
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" once emitted
    stack: list[tuple[str, int]] = [(dag.output, 0)]
    state[dag.output] = "open"
    while stack:
        node_id, next_input = stack.pop()
        inputs = dag.nodes[node_id].inputs
        if next_input == len(inputs):
            state[node_id] = "done"
            order.append(node_id)
            continue
        stack.append((node_id, next_input + 1))
        child = inputs[next_input]
        if state.get(child) == "open":
            raise DagError(f"cycle through input {child!r}", node=node_id, field="inputs")
        if child not in state:
            state[child] = "open"
            stack.append((child, 0))
    return order
