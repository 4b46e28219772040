"""invert: the photographic negative, 255 - x on every channel."""

from __future__ import annotations

import numpy as np

from l1web.engine.effects.effect import Effect


def invert_image(rgb: np.ndarray, params: dict) -> np.ndarray:
    return np.subtract(255, rgb, dtype=np.uint8)


EFFECT = Effect(
    name="invert",
    description="Photographic negative: every channel becomes 255 minus its value.",
    implementation_version="1",
    image=invert_image,
    video_filter=lambda params: "negate",
)
