"""Helpers many test files share (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from l1web.store import ContentStore


def put_image(store: ContentStore, tmp_path: Path, seed: int = 1, size: tuple[int, int] = (64, 48)) -> str:
    """Store a PNG of seeded noise (same seed, same bytes) as a system item; its digest."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / f"img{seed}.png"
    Image.fromarray(pixels).save(path)
    return store.put_file(path, source="test")
