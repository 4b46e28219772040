"""Validation: every bad DAG is refused with a DagError naming the node and the field."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1web.engine import DagError, parse_dag, validate
from l1web.engine.dag import MAX_NODES, topological_order

DIGEST = "a" * 64


def dag(*nodes: dict, output: str | None = None):
    return parse_dag({"nodes": list(nodes), "output": output or nodes[-1]["id"]})


def src(node_id: str = "s") -> dict:
    return {"id": node_id, "type": "SOURCE", "config": {"hash": DIGEST}}


def refused(*nodes: dict, output: str | None = None) -> DagError:
    with pytest.raises(DagError) as info:
        validate(dag(*nodes, output=output))
    return info.value


def test_valid_chain_validates_and_fills_defaults():
    checked = validate(dag(src(), {"id": "seg", "type": "SEGMENT", "config": {"duration": 2},
                                   "inputs": ["s"]}))
    assert checked.nodes["seg"].config == {"offset": 0.0, "duration": 2.0, "precise": True}


def test_unknown_type_names_node_and_type_field():
    err = refused(src(), {"id": "x", "type": "EXPLODE", "inputs": ["s"]})
    assert (err.node, err.field) == ("x", "type")
    assert "EXPLODE" in str(err) and "'x'" in str(err)


def test_unknown_config_key_is_named():
    err = refused(src(), {"id": "seg", "type": "SEGMENT", "config": {"start": 1},
                          "inputs": ["s"]})
    assert (err.node, err.field) == ("seg", "start")
    assert "offset" in str(err)  # the allowed keys are listed


@pytest.mark.parametrize("value", ["2", True, None, [1], math.nan, math.inf, -1.0, 1e9])
def test_bad_numbers_are_refused(value):
    err = refused(src(), {"id": "seg", "type": "SEGMENT", "config": {"offset": value},
                          "inputs": ["s"]})
    assert (err.node, err.field) == ("seg", "offset")


def test_nested_field_path_is_named():
    err = refused(src(), {"id": "t", "type": "TRANSFORM",
                          "config": {"effects": {"saturation": 9}}, "inputs": ["s"]})
    assert err.field == "effects.saturation"


def test_bad_choice_lists_the_choices():
    err = refused(src(), {"id": "r", "type": "RESIZE",
                          "config": {"width": 10, "height": 10, "mode": "zoom"}, "inputs": ["s"]})
    assert err.field == "mode" and "fit" in str(err)


def test_missing_required_key():
    err = refused(src(), {"id": "r", "type": "RESIZE", "config": {"width": 10},
                          "inputs": ["s"]})
    assert (err.node, err.field) == ("r", "height")


def test_duplicate_ids_are_refused():
    with pytest.raises(DagError) as info:
        dag(src("a"), src("a"))
    assert (info.value.node, info.value.field) == ("a", "id")


def test_missing_or_malformed_id():
    with pytest.raises(DagError):
        dag({"type": "SOURCE"}, output="x")
    with pytest.raises(DagError):
        dag({"id": "../etc", "type": "SOURCE"})


def test_dangling_input_is_named():
    err = refused(src(), {"id": "seg", "type": "SEGMENT", "inputs": ["ghost"]})
    assert (err.node, err.field) == ("seg", "inputs") and "ghost" in str(err)


@pytest.mark.parametrize(("node_type", "count"), [("SEGMENT", 2), ("BLEND", 1), ("MUX", 1)])
def test_wrong_input_counts(node_type, count):
    nodes = [src(f"s{i}") for i in range(count)]
    err = refused(*nodes, {"id": "n", "type": node_type, "inputs": [f"s{i}" for i in range(count)]})
    assert (err.node, err.field) == ("n", "inputs")


def test_source_with_inputs_is_refused():
    err = refused(src("a"), {"id": "b", "type": "SOURCE", "inputs": ["a"]})
    assert err.node == "b"


def test_two_node_cycle_is_refused():
    err = refused(
        {"id": "a", "type": "SEGMENT", "inputs": ["b"]},
        {"id": "b", "type": "SEGMENT", "inputs": ["a"]},
    )
    assert err.field == "inputs" and "cycle" in str(err)


def test_self_loop_is_refused():
    err = refused({"id": "a", "type": "SEQUENCE", "inputs": ["a"]})
    assert "cycle" in str(err)


def test_no_output_or_unknown_output():
    with pytest.raises(DagError, match="output"):
        parse_dag({"nodes": [src()]})
    err = refused(src(), output="elsewhere")
    assert err.field == "output"


def test_size_limits():
    with pytest.raises(DagError, match="too many nodes"):
        parse_dag({"nodes": [src(f"n{i}") for i in range(MAX_NODES + 1)], "output": "n0"})
    err = refused(*[src(f"n{i}") for i in range(65)],
                  {"id": "q", "type": "SEQUENCE", "inputs": [f"n{i}" for i in range(65)]})
    assert (err.node, err.field) == ("q", "inputs")


def test_mux_stream_index_must_name_an_input():
    err = refused(src("a"), src("b"),
                  {"id": "m", "type": "MUX", "config": {"audio_stream": 2}, "inputs": ["a", "b"]})
    assert (err.node, err.field) == ("m", "audio_stream")


def test_layer_list_must_have_one_entry_per_input():
    err = refused(src("a"), src("b"), {"id": "l", "type": "LAYER",
                                       "config": {"inputs": [{}]}, "inputs": ["a", "b"]})
    assert err.field == "inputs"


def test_explicit_sequence_size_needs_width_and_height():
    err = refused(src(), {"id": "q", "type": "SEQUENCE",
                          "config": {"target_size": "explicit", "width": 100}, "inputs": ["s"]})
    assert err.field == "height"


def test_colours_are_normalised():
    checked = validate(dag(src(), {"id": "r", "type": "RESIZE",
                                   "config": {"width": 8, "height": 8, "background": "White"},
                                   "inputs": ["s"]}))
    assert checked.nodes["r"].config["background"] == "#ffffff"


def test_unknown_effect_is_named():
    err = refused(src(), {"id": "e", "type": "EFFECT", "config": {"effect": "nope"},
                          "inputs": ["s"]})
    assert (err.node, err.field) == ("e", "effect")


def test_bad_effect_param_is_named():
    err = refused(src(), {"id": "e", "type": "EFFECT",
                          "config": {"effect": "blur", "params": {"sigma": -5}}, "inputs": ["s"]})
    assert (err.node, err.field) == ("e", "params")


def test_nodes_the_output_does_not_need_are_left_out():
    checked = validate(dag(src("a"), src("unused"),
                           {"id": "seg", "type": "SEGMENT", "inputs": ["a"]}))
    assert topological_order(checked) == ["a", "seg"]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8,
)


#: Hypothesis settings: the machine is shared, so no timing health checks.
RELAXED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(config=st.dictionaries(st.sampled_from(["offset", "duration", "precise", "start"]),
                              JSONISH, max_size=3))
def test_segment_config_either_validates_or_names_a_field(config):
    try:
        checked = validate(dag(src(), {"id": "seg", "type": "SEGMENT", "config": config,
                                       "inputs": ["s"]}))
    except DagError as err:
        assert err.node == "seg" and err.field in {"offset", "duration", "precise", "start"}
    else:
        filled = checked.nodes["seg"].config
        assert isinstance(filled["offset"], float) and math.isfinite(filled["offset"])
        assert isinstance(filled["precise"], bool)


@RELAXED
@given(data=JSONISH)
def test_arbitrary_data_never_crashes_the_parser(data):
    try:
        validate(parse_dag(data))
    except DagError:
        pass


def test_validation_is_idempotent():
    once = validate(dag(src("a"), src("b"),
                        {"id": "l", "type": "LAYER", "inputs": ["a", "b"]},
                        {"id": "q", "type": "SEQUENCE", "config": {"target_size": "explicit",
                                                                  "width": 64, "height": 48},
                         "inputs": ["l", "a"]},
                        {"id": "e", "type": "EFFECT", "config": {"effect": "dog"}, "inputs": ["q"]}))
    assert validate(once) == once
