"""SEQUENCE on real clips: cut, crossfade and fade; mixed sizes; clips with and without sound."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.conftest import duration, frame, streams


def seq(render, media, names, **config):
    nodes = [render.source(f"s{i}", media[name]) for i, name in enumerate(names)]
    nodes.append({"id": "q", "type": "SEQUENCE", "config": config,
                  "inputs": [n["id"] for n in nodes]})
    return render.output(nodes)


def test_cut_adds_durations(render, media):
    out = seq(render, media, ["av", "av"])
    assert duration(out) == pytest.approx(4.0, abs=0.15)
    assert set(streams(out)) == {"video", "audio"}


def test_cut_joins_different_sizes_at_the_first_size(render, media):
    out = seq(render, media, ["av", "silent"])  # 160x120 then 128x96
    video = streams(out)["video"]
    assert (video["width"], video["height"]) == (160, 120)
    assert duration(out) == pytest.approx(3.0, abs=0.15)


def test_largest_and_explicit_target_sizes(render, media):
    largest = streams(seq(render, media, ["silent", "av"], target_size="largest"))["video"]
    assert (largest["width"], largest["height"]) == (160, 120)
    explicit = streams(seq(render, media, ["silent", "av"], target_size="explicit",
                           width=200, height=100))["video"]
    assert (explicit["width"], explicit["height"]) == (200, 100)


def test_clip_without_sound_gets_silence_of_its_length(render, media):
    out = seq(render, media, ["silent", "av"])
    assert set(streams(out)) == {"video", "audio"}
    assert float(streams(out)["audio"]["duration"]) == pytest.approx(3.0, abs=0.15)


def test_all_silent_clips_give_a_silent_video(render, media):
    out = seq(render, media, ["silent", "silent"])
    assert set(streams(out)) == {"video"}


def test_crossfade_overlaps_clips(render, media):
    out = seq(render, media, ["av", "av"], transition={"type": "crossfade", "duration": 0.5})
    assert duration(out) == pytest.approx(3.5, abs=0.15)


def test_crossfade_three_clips_with_a_silent_one(render, media):
    out = seq(render, media, ["av", "silent", "av"],
              transition={"type": "crossfade", "duration": 0.25})
    assert duration(out) == pytest.approx(4.5, abs=0.15)
    assert set(streams(out)) == {"video", "audio"}


def test_fade_keeps_length_and_starts_black(render, media):
    out = seq(render, media, ["av", "av"], transition={"type": "fade", "duration": 0.5})
    assert duration(out) == pytest.approx(4.0, abs=0.15)
    assert frame(out, at=0.0).mean() < 20
    assert frame(out, at=1.0).mean() > 60


def test_fade_longer_than_half_a_clip_is_shortened(render, media):
    out = seq(render, media, ["silent", "silent"], transition={"type": "fade", "duration": 5.0})
    assert duration(out) == pytest.approx(2.0, abs=0.15)


def test_audio_sequence(render, media):
    out = seq(render, media, ["tone", "tone"])
    assert set(streams(out)) == {"audio"}
    assert duration(out) == pytest.approx(3.0, abs=0.15)


def test_long_sequence_runs_as_a_tree(render, media):
    nodes = [render.source("s", media["silent"])]
    seg = [{"id": f"p{i}", "type": "SEGMENT", "config": {"offset": i * 0.05, "duration": 0.2},
            "inputs": ["s"]} for i in range(10)]
    nodes += seg + [{"id": "q", "type": "SEQUENCE", "inputs": [n["id"] for n in seg]}]
    report = render.run(nodes)
    assert report["status"] == "completed", report["error"]
    assert {"q~0.0", "q~0.1", "q"} <= set(report["steps"])
    out = render.store.path_for(report["output"])
    assert duration(out) == pytest.approx(2.0, abs=0.2)
    assert not np.isnan(frame(out, at=1.0)).any()
