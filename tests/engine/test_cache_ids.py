"""Cache ids: the recipe pinned by test vectors (also written in docs/engine.md)."""

from __future__ import annotations

import importlib

from hypothesis import given, settings
from hypothesis import strategies as st

from l1web.engine import parse_dag, plan
from l1web.engine.canonical import canonical_json, sha3_json
from l1web.engine.encoding import ENCODER_VERSION
from l1web.engine.plan import cache_id, executor_version

#: SHA3-256 of the bytes `fake video content` (the artdag reference vector).
FAKE = "c149bf191f6333977e91e845b761c4f4b6b8040e3cf8b27a0e7cf1d181084ee3"
SEGMENT_CONFIG = {"offset": 0.0, "duration": 2.0, "precise": True}
SEGMENT_TEXT = (
    '{"config":{"duration":2.0,"offset":0.0,"precise":true},'
    '"inputs":["c149bf191f6333977e91e845b761c4f4b6b8040e3cf8b27a0e7cf1d181084ee3"],'
    '"type":"SEGMENT","version":{"encoder":"5ed7cc90f34d4146","executor":"SEGMENT/1"}}'
)
SEGMENT_ID = "1bfefbc6b30ad988c5e5c316f43fd45ba229458612f15c18d4f74f863c80bdb8"
SEQUENCE_AB = "f17e9430e8d4f824a760a00ea934766676965331182d328f7d2c985a6b9e2ce5"
SEQUENCE_BA = "2d38bcb5f01edd78bd04acf25a7dbe600650d5eff81c17c21bd3b1357b25f07d"
SEQUENCE_CONFIG = {"transition": {"type": "cut", "duration": 0.5}, "target_size": "first",
                   "width": None, "height": None, "background": "#000000"}


def test_encoder_version_is_pinned():
    # Changing encoder settings must be a deliberate act: update this and docs/engine.md.
    assert ENCODER_VERSION == "5ed7cc90f34d4146"


def test_segment_vector():
    version = executor_version("SEGMENT", SEGMENT_CONFIG)
    assert canonical_json({"type": "SEGMENT", "config": SEGMENT_CONFIG, "inputs": [FAKE],
                           "version": {"executor": version, "encoder": ENCODER_VERSION}}
                          ) == SEGMENT_TEXT
    assert cache_id("SEGMENT", SEGMENT_CONFIG, [FAKE], version) == SEGMENT_ID


def test_sequence_vectors_depend_on_input_order():
    version = executor_version("SEQUENCE", SEQUENCE_CONFIG)
    assert cache_id("SEQUENCE", SEQUENCE_CONFIG, [FAKE, SEGMENT_ID], version) == SEQUENCE_AB
    assert cache_id("SEQUENCE", SEQUENCE_CONFIG, [SEGMENT_ID, FAKE], version) == SEQUENCE_BA


def _plan(nodes, analysis_kinds):
    dag = parse_dag({"nodes": nodes, "output": nodes[-1]["id"]})
    return plan(dag, {h: {"media": {"kind": k}} for h, k in analysis_kinds.items()})


def _ids(p):
    return {s["step_id"]: s["cache_id"] for s in p["steps"]}


A, B = "a" * 64, "b" * 64
SOURCES = [{"id": "a", "type": "SOURCE", "config": {"hash": A}},
           {"id": "b", "type": "SOURCE", "config": {"hash": B}}]
KINDS = {A: "video", B: "video"}


def test_source_cache_id_is_its_content_hash():
    p = _plan([SOURCES[0], {"id": "s", "type": "SEGMENT", "inputs": ["a"]}], KINDS)
    assert _ids(p)["a"] == A


def test_plan_sequence_ab_differs_from_ba():
    ab = _plan([*SOURCES, {"id": "q", "type": "SEQUENCE", "inputs": ["a", "b"]}], KINDS)
    ba = _plan([*SOURCES, {"id": "q", "type": "SEQUENCE", "inputs": ["b", "a"]}], KINDS)
    assert _ids(ab)["q"] != _ids(ba)["q"]


def test_number_spelling_and_defaults_do_not_change_ids():
    spelled = [{"offset": 1}, {"offset": 1.0}, {"offset": 1.0, "precise": True, "duration": None}]
    ids = {_ids(_plan([SOURCES[0], {"id": "s", "type": "SEGMENT", "config": c,
                                    "inputs": ["a"]}], KINDS))["s"] for c in spelled}
    assert len(ids) == 1


def test_node_ids_do_not_change_cache_ids():
    one = _plan([SOURCES[0], {"id": "x", "type": "SEGMENT", "inputs": ["a"]}], KINDS)
    two = _plan([SOURCES[0], {"id": "y", "type": "SEGMENT", "inputs": ["a"]}], KINDS)
    assert _ids(one)["x"] == _ids(two)["y"]


def test_effect_by_name_or_hash_has_one_id():
    from l1web.engine.effects import get_effect

    by_name = _plan([SOURCES[0], {"id": "e", "type": "EFFECT", "config": {"effect": "invert"},
                                  "inputs": ["a"]}], KINDS)
    by_hash = _plan([SOURCES[0], {"id": "e", "type": "EFFECT",
                                  "config": {"effect": get_effect("invert").hash},
                                  "inputs": ["a"]}], KINDS)
    assert _ids(by_name)["e"] == _ids(by_hash)["e"]


def test_changing_an_effect_version_changes_every_downstream_id(monkeypatch):
    nodes = [SOURCES[0], {"id": "e", "type": "EFFECT", "config": {"effect": "invert"},
                          "inputs": ["a"]},
             {"id": "r", "type": "RESIZE", "config": {"width": 64, "height": 48}, "inputs": ["e"]},
             {"id": "t", "type": "TRANSFORM", "config": {"effects": {"hue": 20}}, "inputs": ["r"]}]
    before = _ids(_plan(nodes, KINDS))

    def bumped(node_type, config):
        version = executor_version(node_type, config)
        return version + "-changed" if node_type == "EFFECT" else version

    # The package re-exports the function `plan`, which hides the module of the same name.
    monkeypatch.setattr(importlib.import_module("l1web.engine.plan"), "executor_version", bumped)
    after = _ids(_plan(nodes, KINDS))
    assert after["a"] == before["a"]
    assert all(after[s] != before[s] for s in ("e", "r", "t"))


@settings(max_examples=100, deadline=None)
@given(config=st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4),
                              max_size=4),
       inputs=st.lists(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
                       min_size=2, max_size=4, unique=True))
def test_cache_id_is_sha3_of_the_canonical_record(config, inputs):
    record = {"type": "T", "config": config, "inputs": inputs,
              "version": {"executor": "T/1", "encoder": ENCODER_VERSION}}
    assert cache_id("T", config, inputs, "T/1") == sha3_json(record)
    assert cache_id("T", config, inputs[::-1], "T/1") != cache_id("T", config, inputs, "T/1")


def test_the_png_setting_is_part_of_every_cache_id():
    """Issue 19: another PNG_ENCODING makes other bytes, so it must make other ids."""
    from l1web.engine import encoding

    assert encoding.encoder_version("small") != encoding.encoder_version("fast") == ENCODER_VERSION
    nodes = [{"id": "a", "type": "SOURCE", "config": {"hash": A}},
             {"id": "fx", "type": "EFFECT", "config": {"effect": "invert"}, "inputs": ["a"]}]
    fast = _ids(_plan(nodes, {A: "image"}))
    try:
        encoding.configure("small")
        small_plan = _plan(nodes, {A: "image"})
    finally:
        encoding.configure("fast")
    small = _ids(small_plan)
    assert small["a"] == fast["a"] == A  # a source is its content, whatever the settings
    assert small["fx"] != fast["fx"]
    assert {s["step_id"]: s.get("encoder") for s in small_plan["steps"]}["fx"] == encoding.encoder_version("small")
