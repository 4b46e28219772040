"""brightness: add a constant to every channel."""

from __future__ import annotations

from typing import cast

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import Param, ParamValues

PARAMS = {
    "amount": Param(
        "amount", "float", 0.15, -1.0, 1.0,
        "added to every channel as a fraction of full scale (-1 black, 0 unchanged, 1 white)",
    ),
}


def offset(params: ParamValues) -> float:
    """The amount in 0..255 channel units."""
    return params["amount"] * 255.0


def brightness_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    shifted = rgb.astype(np.float32) + offset(params)
    return cast(np.ndarray, np.rint(np.clip(shifted, 0, 255)).astype(np.uint8))  # numpy's ufuncs return Any


def brightness_filter(params: ParamValues) -> str:
    # The same RGB formula as the image path, as a lookup table per channel.
    expr = f"clip(val+{offset(params):.6g}\\,0\\,255)"
    return f"lutrgb=r={expr}:g={expr}:b={expr}"


EFFECT = Effect(
    name="brightness",
    description="Brighter or darker: adds amount × 255 to every channel, clipped to 0..255.",
    implementation_version="1",
    image=brightness_image,
    params=PARAMS,
    video_filter=brightness_filter,
)
