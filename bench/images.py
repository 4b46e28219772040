"""Test pictures made here (no downloads): photo-like pixels and a render (the sample cat)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _smooth(noise: np.ndarray, sigma: float) -> np.ndarray:
    """`noise` blurred by a Gaussian of `sigma` pixels over the first two axes, through the FFT.

    A direct filter with sigma = height / 8 takes over a minute per 1920×1080 picture on a
    loaded machine (its kernel is ~1,000 taps); the FFT's cost does not grow with sigma. The
    picture wraps around at the edges instead of reflecting, which a random field does not mind.
    """
    from scipy import fft, ndimage

    if sigma <= 4:  # a short kernel: the direct filter is quicker
        return ndimage.gaussian_filter(noise, (sigma, sigma, 0))
    height, width = noise.shape[:2]
    fy = fft.fftfreq(height).astype(np.float32)[:, None, None]
    fx = fft.rfftfreq(width).astype(np.float32)[None, :, None]
    transfer = np.exp(np.float32(-2 * (np.pi * sigma) ** 2) * (fx**2 + fy**2))
    spectrum = fft.rfft2(noise, axes=(0, 1)) * transfer  # float32 in, complex64 out
    return fft.irfft2(spectrum, s=(height, width), axes=(0, 1))


def photo(size: tuple[int, int], seed: int) -> np.ndarray:
    """Photo-like pixels: smooth colour fields at a few scales plus sensor noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    out = np.full((height, width, 3), 128.0, np.float32)
    for sigma, amplitude in ((height / 8, 60), (height / 32, 30), (height / 128, 15), (1.0, 8)):
        field = _smooth(rng.normal(0, 1, (height, width, 3)).astype(np.float32), sigma)
        out += amplitude * field / (field.std() + 1e-9)
    out += rng.normal(0, 2.5, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def render(size: tuple[int, int]) -> np.ndarray:
    """A rendered picture: the sample cat (flat shapes over fur textures), scaled to `size`."""
    from l1web.samples import draw_cat

    return np.asarray(draw_cat().convert("RGB").resize(size, Image.Resampling.BICUBIC))
