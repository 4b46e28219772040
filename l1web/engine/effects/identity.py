"""identity: the output shows exactly the input (re-encoded into the output format)."""

from __future__ import annotations

import numpy as np

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import ParamValues


def identity_image(rgb: np.ndarray, params: ParamValues) -> np.ndarray:
    return rgb


EFFECT = Effect(
    name="identity",
    description="Leaves the picture unchanged; the output is re-encoded in the output format.",
    implementation_version="1",
    image=identity_image,
    video_filter=lambda params: "null",
)
