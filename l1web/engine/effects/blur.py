"""blur: Gaussian blur of a given standard deviation."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.params import Param

PARAMS = {
    "sigma": Param(
        "sigma", "float", 2.0, 0.1, 64.0,
        "standard deviation of the Gaussian, in pixels (the blur radius is about 3×sigma)",
    ),
}


def blur_image(rgb: np.ndarray, params: dict) -> np.ndarray:
    sigma = params["sigma"]
    # Blur across rows and columns only, never across the colour channels.
    blurred = gaussian_filter(rgb.astype(np.float32), sigma=(sigma, sigma, 0), mode="nearest")
    return np.rint(blurred).astype(np.uint8)


EFFECT = Effect(
    name="blur",
    description="Gaussian blur; sigma is the standard deviation in pixels.",
    implementation_version="1",
    image=blur_image,
    params=PARAMS,
    video_filter=lambda params: f"gblur=sigma={params['sigma']:.6g}",
)
