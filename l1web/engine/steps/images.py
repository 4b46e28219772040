"""LAYER and BLEND on still images, with Pillow and numpy: exact alpha and blend arithmetic.

The formulas are those of ffmpeg's `blend` filter, so an image and a video blended with the
same mode and opacity look alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from l1web.engine import written
from l1web.engine.encoding import png_options
from l1web.engine.steps.task import RenderTask, check_scaled

Array = np.ndarray
#: Blend modes on float RGB arrays in 0..255: A is the base, B the layer.
MODES: dict[str, Callable[[Array, Array], Array]] = {
    "normal": lambda a, b: b,
    "multiply": lambda a, b: a * b / 255,
    "screen": lambda a, b: 255 - (255 - a) * (255 - b) / 255,
    "overlay": lambda a, b: np.where(a < 128, 2 * a * b / 255,
                                     255 - 2 * (255 - a) * (255 - b) / 255),
    "add": lambda a, b: np.minimum(a + b, 255),
    "subtract": lambda a, b: np.maximum(a - b, 0),
    "average": lambda a, b: (a + b) / 2,
    "difference": lambda a, b: np.abs(a - b),
    "lighten": np.maximum,
    "darken": np.minimum,
}


def blend(job: RenderTask) -> None:
    with Image.open(job.inputs[0]) as im:
        base = im.convert("RGB")
    with Image.open(job.inputs[1]) as im:
        top = im.convert("RGB").resize(base.size, Image.Resampling.BICUBIC)
    a = np.asarray(base, dtype=np.float32)
    b = np.asarray(top, dtype=np.float32)
    mixed = a + (MODES[job.config["mode"]](a, b) - a) * job.config["opacity"]
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    written.save_image(Image.fromarray(out, "RGB"), job.out, "PNG", **png_options())


def layer(job: RenderTask) -> None:
    with Image.open(job.inputs[0]) as im:
        keep_alpha = "A" in im.getbands()
        canvas = im.convert("RGBA")
    for index in range(1, len(job.inputs)):
        entry = job.config["inputs"][index]
        with Image.open(job.inputs[index]) as im:
            check_scaled(index, im.width, im.height, entry["scale"])
            _paste(canvas, _prepared(im.convert("RGBA"), entry), entry["position"])
    written.save_image(canvas if keep_alpha else canvas.convert("RGB"), job.out, "PNG", **png_options())


def _prepared(im: Image.Image, entry: dict[str, Any]) -> Image.Image:
    if entry["scale"] != 1:
        size = (max(1, round(im.width * entry["scale"])), max(1, round(im.height * entry["scale"])))
        im = im.resize(size, Image.Resampling.BICUBIC)
    if entry["opacity"] < 1:
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) * entry["opacity"]
        im.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8), "L"))
    return im


def _paste(canvas: Image.Image, im: Image.Image, position: list[int]) -> None:
    # alpha_composite wants the layer inside the canvas: crop what hangs off any edge.
    x, y = position
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(im.width, canvas.width - x), min(im.height, canvas.height - y)
    if right > left and bottom > top:
        canvas.alpha_composite(im.crop((left, top, right, bottom)), (x + left, y + top))
