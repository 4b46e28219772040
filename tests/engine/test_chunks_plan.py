"""Chunk planning (engine/chunks.py, plan(..., chunking)): pure functions, no media needed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from l1web.engine import chunks, parse_dag, plan
from l1web.engine.chunks import Chunking, Facts, boundaries
from l1web.engine.effects import registry

LONG = {"kind": "video", "fps": 25.0, "duration": 60.0, "width": 320, "height": 240, "cfr": True}
SETTING = Chunking(seconds=10.0, min_seconds=30.0)


def make_plan(nodes, media=None, chunking=SETTING, output=None):
    """Sources are named by their id; `media` maps a source id to its analysis media facts."""
    analysis, full = {}, []
    for node in nodes:
        if node["type"] == "SOURCE":
            digest = node["id"].encode().hex().ljust(64, "0")
            analysis[digest] = {"media": (media or {}).get(node["id"], LONG)}
            node = {**node, "config": {"hash": digest}}
        full.append(node)
    return plan(parse_dag({"nodes": full, "output": output or full[-1]["id"]}), analysis, chunking)


def effect(name="dog", node_id="fx", inputs=("v",)):
    return {"id": node_id, "type": "EFFECT", "config": {"effect": name}, "inputs": list(inputs)}


def by_id(p):
    return {s["step_id"]: s for s in p["steps"]}


def test_boundaries_cover_every_frame_once_in_even_ranges():
    ranges = boundaries(Facts(25.0, 60.0), SETTING)
    assert ranges == [(0, 250), (250, 500), (500, 750), (750, 1000), (1000, 1250), (1250, None)]
    odd = boundaries(Facts(29.97, 47.3), SETTING)  # 1418 frames in 5 chunks
    starts = [a for a, _ in odd]
    assert starts[0] == 0 and all(end == nxt for (_, end), nxt in zip(odd, starts[1:], strict=False))
    sizes = [b - a for a, b in odd[:-1]]
    assert max(sizes) - min(sizes) <= 1 and odd[-1][1] is None


def test_short_or_unchunkable_videos_stay_one_piece():
    assert boundaries(Facts(25.0, 30.0), SETTING) == [(0, None)]  # not longer than the minimum
    assert boundaries(Facts(25.0, 600.0), chunks.OFF) == [(0, None)]
    assert len(boundaries(Facts(25.0, 600.0), SETTING)) == 60
    assert len(boundaries(Facts(25.0, 31.0), SETTING)) == 3
    assert len(boundaries(Facts(25.0, 36.0), Chunking(seconds=100.0, min_seconds=30.0))) == 2


def test_boundaries_are_a_pure_function_of_facts_and_setting():
    assert boundaries(Facts(25.0, 61.0), SETTING) == boundaries(Facts(25.0, 61.0), SETTING)
    assert boundaries(Facts(25.0, 61.0), SETTING) != boundaries(Facts(25.0, 61.0), Chunking(7.0, 30.0))


def test_a_long_effect_becomes_chunks_and_a_join_keeping_the_node_id():
    p = make_plan([{"id": "v", "type": "SOURCE"}, effect()])
    steps = by_id(p)
    chunk_ids = [f"fx~c{i}" for i in range(6)]
    assert list(steps) == ["v", *chunk_ids, "fx"]
    assert [steps[c]["frames"] for c in chunk_ids][:2] == [[0, 250], [250, 500]]
    assert steps["fx~c5"]["frames"] == [1250, None]
    assert all(steps[c]["inputs"] == ["v"] and steps[c]["level"] == 1 for c in chunk_ids)
    assert steps["fx~c2"]["chunk"] == {"of": "fx", "index": 2, "count": 6}
    join = steps["fx"]
    assert join["inputs"] == [*chunk_ids, "v"] and join["level"] == 2
    assert join["join"] == {"chunks": chunk_ids, "seconds": 10.0,
                            "frames": [steps[c]["frames"] for c in chunk_ids]}
    assert join["input_cache_ids"][:6] == [steps[c]["cache_id"] for c in chunk_ids]
    assert p["output"] == "fx" and p["output_cache_id"] == join["cache_id"]
    assert p["levels"] == [["v"], chunk_ids, ["fx"]]
    assert json.loads(json.dumps(p)) == p
    assert len({s["cache_id"] for s in p["steps"]}) == len(p["steps"])


def test_the_chunk_setting_enters_the_cache_id_only_when_chunking_applies():
    nodes = [{"id": "v", "type": "SOURCE"}, effect()]
    unchunked = by_id(make_plan(nodes, chunking=chunks.OFF))["fx"]["cache_id"]
    ten = by_id(make_plan(nodes))["fx"]["cache_id"]
    seven = by_id(make_plan(nodes, chunking=Chunking(seconds=7.0, min_seconds=30.0)))["fx"]["cache_id"]
    assert len({unchunked, ten, seven}) == 3
    # Only the seconds shape the boundaries: another minimum that still chunks gives the same id.
    assert by_id(make_plan(nodes, chunking=Chunking(10.0, 20.0)))["fx"]["cache_id"] == ten
    # A short video is never chunked, so its id is the same whatever the setting.
    short = {"v": {**LONG, "duration": 12.0}}
    ids = {by_id(make_plan(nodes, short, chunking=c))["fx"]["cache_id"]
           for c in (chunks.OFF, SETTING, Chunking(7.0, 5.0 + 30.0))}
    assert len(ids) == 1
    # A chunk is named by its frames, not the setting: the same range is the same bytes.
    same = by_id(make_plan(nodes, chunking=Chunking(10.0, 20.0)))["fx~c0"]["cache_id"]
    assert same == by_id(make_plan(nodes))["fx~c0"]["cache_id"]


def test_frame_wise_node_types_and_conditions():
    resize = {"id": "r", "type": "RESIZE", "config": {"width": 64, "height": 48}, "inputs": ["v"]}
    assert "r~c0" in by_id(make_plan([{"id": "v", "type": "SOURCE"}, resize]))
    colour = {"id": "t", "type": "TRANSFORM", "config": {"effects": {"hue": 30}}, "inputs": ["v"]}
    assert "t~c0" in by_id(make_plan([{"id": "v", "type": "SOURCE"}, colour]))
    faster = {"id": "t", "type": "TRANSFORM", "config": {"effects": {"speed": 2}}, "inputs": ["v"]}
    assert list(by_id(make_plan([{"id": "v", "type": "SOURCE"}, faster]))) == ["v", "t"]
    cut = {"id": "s", "type": "SEGMENT", "config": {"offset": 1}, "inputs": ["v"]}
    assert list(by_id(make_plan([{"id": "v", "type": "SOURCE"}, cut]))) == ["v", "s"]


def test_blend_and_layer_are_chunked_only_on_aligned_inputs():
    blend = {"id": "b", "type": "BLEND", "inputs": ["v", "w"]}
    srcs = [{"id": "v", "type": "SOURCE"}, {"id": "w", "type": "SOURCE"}]
    aligned = by_id(make_plan([*srcs, blend], {"v": LONG, "w": LONG}))
    assert aligned["b"]["inputs"][-2:] == ["v", "w"] and "b~c0" in aligned
    longer = by_id(make_plan([*srcs, blend], {"v": LONG, "w": {**LONG, "duration": 61.0}}))
    assert "b~c0" not in longer
    other_rate = by_id(make_plan([*srcs, blend], {"v": LONG, "w": {**LONG, "fps": 30.0}}))
    assert "b~c0" not in other_rate
    still = {"kind": "image", "width": 64, "height": 48}
    layer = {"id": "l", "type": "LAYER", "inputs": ["v", "i"]}
    with_still = by_id(make_plan([{"id": "v", "type": "SOURCE"}, {"id": "i", "type": "SOURCE"}, layer],
                                 {"v": LONG, "i": still}))
    assert "l~c0" in with_still


def test_chains_of_frame_wise_steps_know_their_facts():
    nodes = [{"id": "v", "type": "SOURCE"},
             {"id": "r", "type": "RESIZE", "config": {"width": 64, "height": 48}, "inputs": ["v"]},
             effect(inputs=("r",)),
             {"id": "s", "type": "SEGMENT", "config": {"offset": 1}, "inputs": ["fx"]},
             effect("invert", "after", inputs=("s",))]
    steps = by_id(make_plan(nodes))
    assert steps["fx~c0"]["inputs"] == ["r"] and steps["fx"]["join"]
    assert "after~c0" not in steps  # a SEGMENT's exact length is not known before it renders


def test_stateful_effects_are_never_chunked(monkeypatch):
    stateful = dataclasses.replace(registry.get_effect("invert"), name="trails", per_frame=False)
    monkeypatch.setattr(registry, "_index", lambda: {"trails": stateful, stateful.hash: stateful})
    steps = by_id(make_plan([{"id": "v", "type": "SOURCE"}, effect("trails")]))
    assert list(steps) == ["v", "fx"] and "join" not in steps["fx"]


def test_the_registry_says_which_effects_are_per_frame():
    listed = {e.name: e.to_json()["per_frame"] for e in registry.list_effects()}
    assert listed and all(listed.values()), listed
    # The declaration is the registry's: the effect modules' own objects are not per-frame.
    from l1web.engine.effects import dog

    assert dog.EFFECT.per_frame is False and registry.get_effect("dog").per_frame is True
    assert dog.EFFECT.version == registry.get_effect("dog").version


@pytest.mark.parametrize("media", [{"kind": "video", "fps": None, "duration": 60.0, "cfr": True},
                                   {"kind": "video", "fps": 25.0, "duration": None, "cfr": True},
                                   {**LONG, "cfr": False},  # frames off their rate's grid: variable rate
                                   {k: v for k, v in LONG.items() if k != "cfr"},  # not known to be steady
                                   {"kind": "image", "width": 9, "height": 9}])
def test_unknown_facts_mean_one_piece(media):
    nodes = [{"id": "v", "type": "SOURCE"}, effect()]
    assert list(by_id(make_plan(nodes, {"v": media}))) == ["v", "fx"]


def test_only_frames_on_the_grid_of_their_rates_count_as_constant_rate():
    steady = [i / 25 for i in range(100)]
    assert chunks.on_grid(steady, [25.0, 25.0])
    # Matroska's millisecond times at 29.97 fps are within a quarter frame of the grid.
    assert chunks.on_grid([round(i * 1001 / 30000, 3) for i in range(300)], [30000 / 1001])
    assert not chunks.on_grid(steady, [25.0, 50.0])  # ffmpeg's guessed rate doubles every frame
    assert not chunks.on_grid([t + 0.04 for t in steady], [25.0])  # starts a frame late
    assert not chunks.on_grid(steady[:50] + [t + 0.02 for t in steady[50:]], [25.0])  # a half-frame jump
    variable = [i / 25 for i in range(50)] + [2 + i / 50 for i in range(100)]  # 25 fps, then 50
    assert not chunks.on_grid(variable, [150 / 4.0])
    assert not chunks.on_grid([], [25.0]) and not chunks.on_grid(steady, [0.0])
