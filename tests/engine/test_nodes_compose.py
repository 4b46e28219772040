"""LAYER and BLEND on images (numpy) and video (ffmpeg): positions, opacity, modes, pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.engine.conftest import duration, frame, streams


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(int)


def blend(render, media, base, top, **config):
    return render.output([render.source("a", media[base]), render.source("b", media[top]),
                          {"id": "bl", "type": "BLEND", "config": config, "inputs": ["a", "b"]}])


def test_image_blend_difference_at_half_opacity(render, media):
    out = pixels(blend(render, media, "image", "white", mode="difference", opacity=0.5))
    # red (200,40,40) vs white: |a-b| = (55,215,215); halfway from the base = 127.5 each
    assert np.abs(out - 128).max() <= 1


def test_image_blend_opacity_changes_the_result(render, media):
    low = pixels(blend(render, media, "image", "white", mode="screen", opacity=0.2))
    high = pixels(blend(render, media, "image", "white", mode="screen", opacity=0.9))
    assert low[0, 0].tolist() == [211, 83, 83]
    assert high[0, 0].tolist() == [250, 234, 234]


def test_image_blend_scales_the_layer_to_the_base(render, media):
    out = pixels(blend(render, media, "image", "small", mode="normal", opacity=1.0))
    assert out.shape == (120, 160, 3) and out[60, 80].tolist() == [20, 200, 20]


def test_video_blend_opacity_changes_the_result(render, media):
    low = frame(blend(render, media, "gray", "white", mode="screen", opacity=0.2))
    high = frame(blend(render, media, "gray", "white", mode="screen", opacity=0.9))
    assert low.mean() == pytest.approx(128 + 127 * 0.2, abs=6)
    assert high.mean() == pytest.approx(128 + 127 * 0.9, abs=6)


def test_video_blend_keeps_the_base_length_and_sound(render, media):
    out = blend(render, media, "av", "silent", mode="average")
    assert duration(out) == pytest.approx(2.0, abs=0.15)
    assert set(streams(out)) == {"video", "audio"}


def layer(render, media, base, top, entry):
    return render.output([render.source("a", media[base]), render.source("b", media[top]),
                          {"id": "l", "type": "LAYER", "config": {"inputs": [{}, entry]},
                           "inputs": ["a", "b"]}])


def test_image_layer_position_and_opacity(render, media):
    solid = pixels(layer(render, media, "image", "small", {"position": [10, 20]}))
    assert solid[25, 15].tolist() == [20, 200, 20] and solid[5, 5].tolist() == [200, 40, 40]
    half = pixels(layer(render, media, "image", "small", {"position": [10, 20], "opacity": 0.5}))
    assert np.abs(half[25, 15] - [110, 120, 30]).max() <= 1


def test_image_layer_hanging_off_the_edge_is_clipped(render, media):
    out = pixels(layer(render, media, "image", "small", {"position": [-20, 100], "scale": 2.0}))
    assert out.shape == (120, 160, 3)
    assert out[110, 10].tolist() == [20, 200, 20] and out[110, 70].tolist() == [200, 40, 40]


def test_video_layer_scales_and_places_an_image(render, media):
    out = layer(render, media, "gray", "small", {"position": [100, 50], "scale": 2.0})
    picture = frame(out).astype(int)
    assert np.abs(picture[80, 120] - [20, 200, 20]).max() < 25
    assert np.abs(picture[10, 10] - 128).max() < 10
    assert duration(out) == pytest.approx(1.0, abs=0.1)


def test_video_layer_ends_with_the_base(render, media):
    out = layer(render, media, "silent", "av", {"scale": 0.5, "opacity": 0.5})
    assert duration(out) == pytest.approx(1.0, abs=0.1)


def test_layer_scaled_past_the_pixel_limit_fails_before_resizing(render, media, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(big)
    report = render.run([render.source("a", media["image"]), render.source("b", big),
                         {"id": "l", "type": "LAYER", "config": {"inputs": [{}, {"scale": 3.0}]},
                          "inputs": ["a", "b"]}])
    assert report["status"] == "failed" and "over the limit" in report["error"]
