"""contrast: stretch or squeeze every channel around mid-grey."""

from __future__ import annotations

from typing import cast

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import Param, ParamValues

#: The channel value contrast scales around (mid-grey in 0..255).
PIVOT = 128.0

PARAMS = {
    "factor": Param(
        "factor", "float", 1.3, 0.0, 4.0,
        "scale of each channel's distance from mid-grey (0 flat grey, 1 unchanged)",
    ),
}


def contrast_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    scaled = (rgb.astype(np.float32) - PIVOT) * params["factor"] + PIVOT
    return cast(np.ndarray, np.rint(np.clip(scaled, 0, 255)).astype(np.uint8))  # numpy's ufuncs return Any


def contrast_filter(params: ParamValues) -> str:
    # The same RGB formula as the image path, as a lookup table per channel.
    expr = f"clip((val-{PIVOT:g})*{params['factor']:.6g}+{PIVOT:g}\\,0\\,255)"
    return f"lutrgb=r={expr}:g={expr}:b={expr}"


EFFECT = Effect(
    name="contrast",
    description="More or less contrast: (x - 128) × factor + 128 on every channel, clipped.",
    implementation_version="1",
    image=contrast_image,
    params=PARAMS,
    video_filter=contrast_filter,
)
