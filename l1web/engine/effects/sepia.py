"""sepia: the classic warm brown-tone colour matrix."""

from __future__ import annotations

from typing import cast

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import ParamValues

#: Output R, G, B rows as weights of input R, G, B (the widely used sepia-tone matrix).
SEPIA_MATRIX = np.array(
    [
        [0.393, 0.769, 0.189],
        [0.349, 0.686, 0.168],
        [0.272, 0.534, 0.131],
    ],
    dtype=np.float32,
)


def sepia_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    toned = rgb.astype(np.float32) @ SEPIA_MATRIX.T
    return cast(np.ndarray, np.rint(np.clip(toned, 0, 255)).astype(np.uint8))  # numpy's ufuncs return Any


def sepia_filter(params: ParamValues) -> str:
    weights = ":".join(f"{w:g}" for row in SEPIA_MATRIX.tolist() for w in (*row, 0))
    return f"colorchannelmixer={weights}"


EFFECT = Effect(
    name="sepia",
    description="Old-photograph brown tone: a fixed 3×3 colour matrix, clipped to 0..255.",
    implementation_version="1",
    image=sepia_image,
    video_filter=sepia_filter,
)
