"""Plan: steps with cache ids and kinds, levels, tree-reduced SEQUENCEs, plain JSON data."""

from __future__ import annotations

import json

import pytest

from l1web.engine import DagError, parse_dag, plan
from l1web.engine.plan import MAX_SEQUENCE_FANIN, balanced_groups

KIND_OF = {"v": "video", "i": "image", "a": "audio"}


def make_plan(nodes, output=None):
    """Sources are named by kind letter + number (v1, i2, a3); their hash encodes the name."""
    analysis, full = {}, []
    for node in nodes:
        if node["type"] == "SOURCE":
            digest = node["id"].encode().hex().ljust(64, "0")
            analysis[digest] = {"media": {"kind": KIND_OF[node["id"][0]]}}
            node = {**node, "config": {"hash": digest}}
        full.append(node)
    return plan(parse_dag({"nodes": full, "output": output or full[-1]["id"]}), analysis)


def sources(*names):
    return [{"id": n, "type": "SOURCE"} for n in names]


def test_levels_group_independent_steps():
    p = make_plan([*sources("v1", "v2"),
                   {"id": "s1", "type": "SEGMENT", "inputs": ["v1"]},
                   {"id": "s2", "type": "SEGMENT", "inputs": ["v2"]},
                   {"id": "q", "type": "SEQUENCE", "inputs": ["s1", "s2"]}])
    assert p["levels"] == [["v1", "v2"], ["s1", "s2"], ["q"]]
    assert p["output"] == "q" and p["output_cache_id"] == p["steps"][-1]["cache_id"]


def test_plan_is_plain_json_and_deterministic():
    nodes = [*sources("v1"), {"id": "r", "type": "RESIZE",
                              "config": {"width": 64, "height": 48}, "inputs": ["v1"]}]
    first = make_plan(nodes)
    assert json.loads(json.dumps(first)) == first
    assert make_plan(nodes)["plan_id"] == first["plan_id"]
    step = first["steps"][-1]
    assert set(step) == {"step_id", "node_id", "type", "config", "inputs", "input_cache_ids",
                         "input_kinds", "kind", "cache_id", "encoder", "level"}
    assert step["config"]["mode"] == "fit"  # defaults filled


def test_plan_id_changes_with_any_step():
    base = [*sources("v1"), {"id": "r", "type": "RESIZE", "config": {"width": 64, "height": 48},
                             "inputs": ["v1"]}]
    other = [*sources("v1"), {"id": "r", "type": "RESIZE", "config": {"width": 64, "height": 50},
                              "inputs": ["v1"]}]
    assert make_plan(base)["plan_id"] != make_plan(other)["plan_id"]


def test_long_sequence_becomes_a_balanced_tree():
    names = [f"v{i}" for i in range(20)]
    p = make_plan([*sources(*names), {"id": "q", "type": "SEQUENCE", "inputs": names}])
    seq = [s for s in p["steps"] if s["type"] == "SEQUENCE"]
    assert [s["step_id"] for s in seq] == ["q~0.0", "q~0.1", "q~0.2", "q"]
    assert [len(s["inputs"]) for s in seq] == [7, 7, 6, 3]
    assert all(len(s["inputs"]) <= MAX_SEQUENCE_FANIN for s in seq)
    flattened = [i for s in seq[:-1] for i in s["inputs"]]
    assert flattened == names  # order kept
    assert seq[-1]["level"] == 2


def test_balanced_groups_are_even_and_ordered():
    assert balanced_groups(list("abcdefghi"), 4) == [list("abc"), list("def"), list("ghi")]
    assert [len(g) for g in balanced_groups(list(range(65)), 8)] == [8, 8] + [7] * 7


def test_only_steps_the_output_needs_are_planned():
    p = make_plan([*sources("v1", "v2"), {"id": "s", "type": "SEGMENT", "inputs": ["v1"]}])
    assert [s["step_id"] for s in p["steps"]] == ["v1", "s"]


def test_kinds_propagate():
    p = make_plan([*sources("v1", "a1"),
                   {"id": "m", "type": "MUX", "inputs": ["v1", "a1"]},
                   {"id": "mix", "type": "AUDIO_MIX", "inputs": ["m", "a1"]}])
    assert {s["step_id"]: s["kind"] for s in p["steps"]} == {
        "v1": "video", "a1": "audio", "m": "video", "mix": "audio"}


@pytest.mark.parametrize(("nodes", "field"), [
    ([*sources("a1"), {"id": "n", "type": "RESIZE", "config": {"width": 8, "height": 8},
                       "inputs": ["a1"]}], "inputs"),
    ([*sources("i1"), {"id": "n", "type": "SEGMENT", "inputs": ["i1"]}], "inputs"),
    ([*sources("i1"), {"id": "n", "type": "TRANSFORM", "config": {"effects": {"speed": 2}},
                       "inputs": ["i1"]}], "effects.speed"),
    ([*sources("a1"), {"id": "n", "type": "TRANSFORM", "config": {"effects": {"hue": 20}},
                       "inputs": ["a1"]}], "effects.hue"),
    ([*sources("v1", "i1"), {"id": "n", "type": "SEQUENCE", "inputs": ["v1", "i1"]}], "inputs"),
    ([*sources("i1", "v1"), {"id": "n", "type": "BLEND", "inputs": ["i1", "v1"]}], "inputs"),
    ([*sources("a1", "v1"), {"id": "n", "type": "MUX", "inputs": ["a1", "v1"]}],
     "video_stream"),
    ([*sources("i1", "v1"), {"id": "n", "type": "AUDIO_MIX", "inputs": ["i1", "v1"]}], "inputs"),
    ([*sources("a1"), {"id": "n", "type": "EFFECT", "config": {"effect": "invert"},
                       "inputs": ["a1"]}], "inputs"),
])
def test_wrong_media_kind_is_refused_at_plan_time(nodes, field):
    with pytest.raises(DagError) as info:
        make_plan(nodes)
    assert (info.value.node, info.value.field) == ("n", field)


def test_source_without_hash_or_analysis_is_refused():
    dag = parse_dag({"nodes": [{"id": "s", "type": "SOURCE", "config": {"input": True}}],
                     "output": "s"})
    with pytest.raises(DagError, match="content hash"):
        plan(dag, {})
    dag = parse_dag({"nodes": [{"id": "s", "type": "SOURCE", "config": {"hash": "a" * 64}}],
                     "output": "s"})
    with pytest.raises(DagError, match="analysis"):
        plan(dag, {})
