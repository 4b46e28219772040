"""EFFECT nodes run the effects package on images and video through the engine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from l1web.engine.effects import get_effect
from tests.engine.conftest import duration, frame, streams


def effect(render, media, name, source="image", **params):
    return render.output([render.source("s", media[source]),
                          {"id": "e", "type": "EFFECT",
                           "config": {"effect": name, "params": params}, "inputs": ["s"]}])


def test_invert_image_by_name(render, media):
    with Image.open(effect(render, media, "invert")) as im:
        assert im.format == "PNG"
        assert np.asarray(im.convert("RGB"))[0, 0].tolist() == [55, 215, 215]


def test_effect_by_hash_reuses_the_render_by_name(render, media):
    effect(render, media, "invert")
    report = render.run([render.source("s", media["image"]),
                         {"id": "e", "type": "EFFECT",
                          "config": {"effect": get_effect("invert").hash}, "inputs": ["s"]}])
    assert report["executed"] == 0


def test_invert_video_keeps_length_and_sound(render, media):
    out = effect(render, media, "invert", source="av")
    assert duration(out) == pytest.approx(2.0, abs=0.15)
    assert set(streams(out)) == {"video", "audio"}
    assert frame(out).mean() == pytest.approx(255 - frame(media["av"]).mean(), abs=8)


def test_dog_turns_a_flat_image_white(render, media):
    with Image.open(effect(render, media, "dog")) as im:
        pixels = np.asarray(im.convert("L"))
    assert pixels.mean() > 200  # no edges in a flat colour: paper white
