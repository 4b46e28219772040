"""SEGMENT, RESIZE and TRANSFORM on real media: durations, sizes, streams and pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.engine.conftest import H, W, duration, frame, streams


def test_segment_precise_takes_offset_and_duration(render, media):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "s", "type": "SEGMENT", "config": {"offset": 0.5, "duration": 1.0},
         "inputs": ["v"]},
    ])
    assert duration(out) == pytest.approx(1.0, abs=0.1)
    found = streams(out)
    assert found["video"]["codec_name"] == "h264"
    assert found["video"]["pix_fmt"] == "yuv420p"
    assert found["audio"]["codec_name"] == "aac"


def test_segment_without_duration_runs_to_the_end(render, media):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "s", "type": "SEGMENT", "config": {"offset": 1.5}, "inputs": ["v"]},
    ])
    assert duration(out) == pytest.approx(0.5, abs=0.1)


def test_segment_fast_copies_the_stream(render, media):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "s", "type": "SEGMENT", "config": {"duration": 1.0, "precise": False},
         "inputs": ["v"]},
    ])
    assert duration(out) == pytest.approx(1.0, abs=0.15)


def test_segment_of_audio_stays_audio(render, media):
    out = render.output([
        render.source("t", media["tone"]),
        {"id": "s", "type": "SEGMENT", "config": {"duration": 0.5}, "inputs": ["t"]},
    ])
    assert set(streams(out)) == {"audio"}
    assert duration(out) == pytest.approx(0.5, abs=0.1)


def test_segment_past_the_end_fails_naming_the_offset(render, media):
    report = render.run([
        render.source("v", media["av"]),
        {"id": "s", "type": "SEGMENT", "config": {"offset": 5.0}, "inputs": ["v"]},
    ])
    assert report["status"] == "failed"
    assert "past the end" in report["error"]


@pytest.mark.parametrize(("mode", "size"), [
    ("fit", (100, 100)), ("fill", (100, 100)), ("stretch", (64, 200)), ("pad", (320, 240)),
])
def test_resize_video_gives_the_requested_size(render, media, mode, size):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "r", "type": "RESIZE",
         "config": {"width": size[0], "height": size[1], "mode": mode}, "inputs": ["v"]},
    ])
    video = streams(out)["video"]
    assert (video["width"], video["height"]) == size


def test_resize_fit_letterboxes_with_the_background(render, media):
    out = render.output([
        render.source("i", media["image"]),
        {"id": "r", "type": "RESIZE",
         "config": {"width": 160, "height": 160, "background": "white"}, "inputs": ["i"]},
    ])
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (160, 160)
        pixels = np.asarray(im.convert("RGB")).astype(int)
    assert pixels[2, 80].tolist() == [255, 255, 255]  # band above the picture
    assert abs(pixels[80, 80] - [200, 40, 40]).max() < 6  # the picture itself


def test_transform_brightness_and_saturation_change_pixels(render, media):
    gray = render.source("g", media["gray"])
    plain = frame(render.output([gray, {"id": "t", "type": "TRANSFORM",
                                        "config": {"effects": {}}, "inputs": ["g"]}]))
    bright = frame(render.output([gray, {"id": "t", "type": "TRANSFORM",
                                         "config": {"effects": {"brightness": 0.3}},
                                         "inputs": ["g"]}]))
    assert bright.mean() > plain.mean() + 50


def test_transform_speed_halves_duration_of_picture_and_sound(render, media):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "t", "type": "TRANSFORM", "config": {"effects": {"speed": 2.0}}, "inputs": ["v"]},
    ])
    assert duration(out) == pytest.approx(1.0, abs=0.1)
    assert set(streams(out)) == {"video", "audio"}


def test_transform_speed_of_audio_uses_chained_atempo(render, media):
    out = render.output([
        render.source("t", media["tone"]),
        {"id": "t2", "type": "TRANSFORM", "config": {"effects": {"speed": 3.0}},
         "inputs": ["t"]},
    ])
    assert duration(out) == pytest.approx(0.5, abs=0.1)


def test_transform_blur_smooths_an_image(render, media):
    out = render.output([
        render.source("v", media["av"]),
        {"id": "t", "type": "TRANSFORM", "config": {"effects": {"blur": 8, "sharpen": 0.0}},
         "inputs": ["v"]},
    ])
    sharp = frame(media["av"]).astype(float)
    soft = frame(out).astype(float)
    assert np.abs(np.diff(soft, axis=1)).mean() < 0.5 * np.abs(np.diff(sharp, axis=1)).mean()
    assert soft.shape == (H, W, 3)
