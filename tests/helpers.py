"""Helpers many test files share (fixtures are in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from l1web.store import ContentStore


def put_image(store: ContentStore, tmp_path: Path, seed: int = 1, size: tuple[int, int] = (64, 48)) -> str:
    """Store a PNG of seeded noise (same seed, same bytes) as a system item; its digest."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / f"img{seed}.png"
    Image.fromarray(pixels).save(path)
    return store.put_file(path, source="test")


def put_fresh_image(app: Any, tmp_path: Path, owner: str = "alice") -> str:
    """Store a PNG of fresh noise (new bytes every call, so run ids differ between tests: the dev
    L2 outlives a test) owned by `owner`; its digest."""
    pixels = np.random.default_rng().integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(pixels).save(path)
    return str(app.extensions["l1"].store.put_file(path, source="test", owner=owner))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """`check()`'s first truthy value, polled every 0.1 s; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def slow_flushes_and_renames(monkeypatch: Any, flush: str) -> list[str]:
    """A slow disk: `l1web.store.ingest.<flush>` (a background flush) sleeps 0.2 s; each flush's end
    and each `os.replace` (as "renamed into <destination folder name>") are recorded in order."""
    import os

    from l1web.store import ingest

    events: list[str] = []
    real_flush, real_replace = getattr(ingest, flush), os.replace

    def slow_flush(target: Any) -> None:
        time.sleep(0.2)  # the flush ends well after the hashing
        real_flush(target)
        events.append("flushed")

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        events.append(f"renamed into {Path(dst).parent.name}")

    monkeypatch.setattr(ingest, flush, slow_flush)
    monkeypatch.setattr(os, "replace", replace)
    return events
