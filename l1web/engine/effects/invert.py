"""invert: the photographic negative, 255 - x on every channel."""

from __future__ import annotations

from typing import cast

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import ParamValues


def invert_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    return cast(np.ndarray, np.subtract(255, rgb, dtype=np.uint8))  # numpy's ufuncs return Any


EFFECT = Effect(
    name="invert",
    description="Photographic negative: every channel becomes 255 minus its value.",
    implementation_version="1",
    image=invert_image,
    video_filter=lambda params: "negate",
)
