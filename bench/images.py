"""Test pictures made here (no downloads): photo-like pixels and a render (the sample cat)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def photo(size: tuple[int, int], seed: int) -> np.ndarray:
    """Photo-like pixels: smooth colour fields at a few scales plus sensor noise.

    Each field is blurred on a grid a few times coarser than its blur, then scaled up, so a
    1920×1080 picture takes well under a second to make.
    """
    from scipy import ndimage

    width, height = size
    rng = np.random.default_rng(seed)
    out = np.full((height, width, 3), 128.0, np.float32)
    for sigma, amplitude in ((height / 8, 60), (height / 32, 30), (height / 128, 15), (1.0, 8)):
        step = max(1, int(sigma / 4))
        grid = rng.normal(0, 1, (height // step + 2, width // step + 2, 3)).astype(np.float32)
        field = ndimage.gaussian_filter(grid, (sigma / step, sigma / step, 0))
        if step > 1:
            field = ndimage.zoom(field, (step, step, 1), order=1)
        field = field[:height, :width]
        out += amplitude * field / (field.std() + 1e-9)
    out += rng.normal(0, 2.5, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def render(size: tuple[int, int]) -> np.ndarray:
    """A rendered picture: the sample cat (flat shapes over fur textures), scaled to `size`."""
    from l1web.samples import draw_cat

    return np.asarray(draw_cat().convert("RGB").resize(size, Image.Resampling.BICUBIC))
