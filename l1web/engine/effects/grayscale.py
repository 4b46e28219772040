"""grayscale: BT.601 luma on all three channels."""

from __future__ import annotations

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import ParamValues

#: BT.601 luma weights of R, G, B: the Y that H.264 video carries, so image and video agree.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """H×W float32 luma in 0..255."""
    return rgb.astype(np.float32) @ LUMA_WEIGHTS


def grayscale_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    gray = np.rint(luma(rgb)).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


EFFECT = Effect(
    name="grayscale",
    description="Black and white: every pixel becomes its BT.601 luma.",
    implementation_version="1",
    image=grayscale_image,
    # Video already carries luma: neutral chroma is grayscale without a trip through RGB.
    video_filter=lambda params: "hue=s=0",
)
