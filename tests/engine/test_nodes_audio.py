"""MUX and AUDIO_MIX on real media: streams, durations and loudness."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from l1web.engine.ffmpeg import ffmpeg_exe
from tests.engine.conftest import duration, streams


def samples(path) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-ac", "1", "-f", "f32le",
                          "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, "<f4")


def rms(path) -> float:
    return float(np.sqrt(np.mean(samples(path) ** 2)))


def test_mux_puts_the_sound_under_the_picture(render, media):
    out = render.output([render.source("v", media["silent"]), render.source("a", media["tone"]),
                         {"id": "m", "type": "MUX", "inputs": ["v", "a"]}])
    found = streams(out)
    assert set(found) == {"video", "audio"}
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    assert duration(out) == pytest.approx(1.0, abs=0.1)  # shortest


def test_mux_stream_indexes_pick_inputs(render, media):
    out = render.output([render.source("a", media["tone"]), render.source("v", media["silent"]),
                         {"id": "m", "type": "MUX", "inputs": ["a", "v"],
                          "config": {"video_stream": 1, "audio_stream": 0, "shortest": False}}])
    assert duration(out) == pytest.approx(1.5, abs=0.1)


def test_mux_of_a_silent_audio_input_fails_clearly(render, media):
    report = render.run([render.source("v", media["av"]), render.source("w", media["silent"]),
                         {"id": "m", "type": "MUX", "inputs": ["v", "w"]}])
    assert report["status"] == "failed" and "no audio stream" in report["error"]


def mix(render, media, **config):
    return render.output([render.source("t", media["tone"]), render.source("v", media["av"]),
                          {"id": "mx", "type": "AUDIO_MIX", "config": config,
                           "inputs": ["t", "v"]}])


def test_audio_mix_is_audio_as_long_as_the_longest(render, media):
    out = mix(render, media)
    assert set(streams(out)) == {"audio"}
    assert duration(out) == pytest.approx(2.0, abs=0.1)


def test_audio_mix_gains(render, media):
    silent = mix(render, media, gains=[0.0, 0.0])
    loud = mix(render, media, gains=[1.0, 1.0], normalize=False)
    quiet = mix(render, media, gains=[0.25, 0.25], normalize=False)
    assert rms(silent) < 1e-3
    assert rms(loud) == pytest.approx(4 * rms(quiet), rel=0.1)
