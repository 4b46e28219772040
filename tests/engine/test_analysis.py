"""Analyze: metadata for every source; tempo, beats and energy for sound; cached by id."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from l1web.engine import analysis_id, analyze, parse_dag
from l1web.engine.audio_features import SAMPLE_RATE, beats, energy


def click_track(bpm: float, seconds: float) -> np.ndarray:
    samples = np.zeros(int(SAMPLE_RATE * seconds), dtype=np.float32)
    click = np.sin(np.arange(400) * 2 * np.pi * 1000 / SAMPLE_RATE) * np.hanning(400)
    for start in np.arange(0.25, seconds - 0.1, 60.0 / bpm):
        i = int(start * SAMPLE_RATE)
        samples[i:i + 400] += click.astype(np.float32)
    return samples


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_tempo_and_beats_of_a_click_track(bpm):
    found = beats(click_track(bpm, 10.0))
    assert found["tempo"] == pytest.approx(bpm, rel=0.03)
    gaps = np.diff(found["beat_times"])
    assert np.median(gaps) == pytest.approx(60.0 / bpm, abs=0.03)
    assert len(found["beat_times"]) >= 10.0 * bpm / 60.0 - 3


def test_silence_has_fallback_tempo_and_no_beats():
    assert beats(np.zeros(SAMPLE_RATE * 2, dtype=np.float32))["beat_times"] == []


def test_energy_follows_loudness():
    quiet_then_loud = np.concatenate([0.1 * np.ones(SAMPLE_RATE), np.ones(SAMPLE_RATE)])
    values = energy(quiet_then_loud)["values"]
    assert len(values) == 40  # 2 s in 50 ms windows
    assert values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(1.0)


def _dag(render, path):
    return parse_dag({"nodes": [render.source("x", path)], "output": "x"})


def test_analyze_reports_media_and_sound(render, media, tmp_path):
    wav = tmp_path / "clicks.wav"
    wavfile.write(wav, SAMPLE_RATE, click_track(120.0, 6.0))
    dag = _dag(render, wav)
    (result,) = analyze(dag, render.store).values()
    assert result["media"]["kind"] == "audio"
    assert result["audio"]["tempo"] == pytest.approx(120.0, rel=0.03)
    assert result["audio"]["energy"]["window_ms"] == 50


def test_video_without_sound_has_no_audio_analysis(render, media):
    (result,) = analyze(_dag(render, media["silent"]), render.store).values()
    assert result["media"]["kind"] == "video" and result["audio"] is None


def test_analysis_is_cached_by_input_hash_and_features(render, media, monkeypatch):
    dag = _dag(render, media["av"])
    cache: dict[str, dict] = {}
    first = analyze(dag, render.store, cache=cache)
    digest = next(iter(first))
    assert list(cache) == [analysis_id(digest, ["beats", "energy", "metadata"])]

    def no_second_look(*args):
        raise AssertionError("analysed again")

    monkeypatch.setattr("l1web.engine.analysis.analyze_file", no_second_look)
    assert analyze(dag, render.store, cache=cache) == first


def test_analysis_id_ignores_feature_order():
    assert analysis_id("a" * 64, ["energy", "beats"]) == analysis_id("a" * 64, ["beats", "energy"])
    assert analysis_id("a" * 64, ["energy"]) != analysis_id("a" * 64, ["beats"])


def test_every_stand_in_store_has_what_the_engines_store_protocol_asks():
    """The tests' and the engine benchmark's minimal stores follow the engine's `Store`: a method
    added to the protocol (session 27's `path_and_image`) broke `make bench` unnoticed."""
    from bench.bench_engine import DirStore as BenchStore
    from l1web.engine.interfaces import Store
    from tests.engine.conftest import DirStore as TestStore

    asked = {name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")}
    assert "path_and_image" in asked
    for stand_in in (BenchStore, TestStore):
        assert asked <= {name for name in dir(stand_in) if callable(getattr(stand_in, name))}, stand_in
