"""What the engine needs from the outside world, as protocols.

The engine never imports Flask, Redis or the real content store: it is handed objects that
satisfy these protocols. `l1web.store.ContentStore` satisfies `Store`; the state module
satisfies `ResultIndex`. Tests may pass small in-memory implementations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from l1web.engine.media import MediaInfo


class Store(Protocol):
    """A content-addressed store of files named by the SHA3-256 hex of their bytes."""

    def has(self, digest: str) -> bool:
        """True when an item with this digest is stored."""

    def path_for(self, digest: str) -> Path:
        """A verified local path to read the item from; raises if missing or corrupt."""

    def path_and_image(self, digest: str) -> tuple[Path, MediaInfo | None]:
        """`path_for`, and the item's facts when the store knows it is an image (else None)."""

    def put_file(self, path: Path, *, source: str, owner: str | None = None) -> str:
        """Move the file at `path` into the store (it is consumed); return its digest."""


class ResultIndex(Protocol):
    """Maps a step's cache id to the content digest of the output rendered for it."""

    def get_result(self, cache_id: str) -> str | None:
        """The output digest recorded for this cache id, or None."""

    def set_result(self, cache_id: str, digest: str) -> None:
        """Record the output digest for this cache id."""
