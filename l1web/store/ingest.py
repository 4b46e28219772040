"""Streaming ingest: bytes go to a temp file in the store's own filesystem while being hashed.

Nothing is held in memory beyond one chunk. The writer enforces the byte cap as bytes arrive,
turns a full disk into `InsufficientStorage`, and removes its temp file on every failure.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Protocol

from l1web.errors import InsufficientStorage, PayloadTooLarge
from l1web.store.names import new_hasher

#: Bytes read from a client or file per loop turn (1 MiB): big enough that the per-call
#: overhead vanishes next to hashing, small enough that memory stays flat.
CHUNK = 1024 * 1024
#: Prefix and suffix of temp files, so a sweep recognises them.
TEMP_PREFIX, TEMP_SUFFIX = "ingest-", ".part"
#: errno values that mean "the disk (or the quota) is full".
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def raise_if_full(exc: OSError) -> None:
    """Turn a full disk into the user-facing 507; other I/O errors are left to the caller."""
    if exc.errno in DISK_FULL:
        raise InsufficientStorage("storage full: the cache's disk has no room for this item") from exc


class TempWriter:
    """A temp file being filled and hashed; `finish` fsyncs it, `discard` removes it."""

    def __init__(self, tmp_dir: Path, max_bytes: int | None) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        self.fd: int | None = fd
        self.path = Path(name)
        self.max_bytes = max_bytes
        self.size = 0
        self._hasher = new_hasher()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise PayloadTooLarge(f"upload is larger than the limit of {self.max_bytes} bytes",
                                  limit=self.max_bytes)
        self._hasher.update(data)
        view = memoryview(data)
        while view:
            written = self._write(view)
            view = view[written:]

    def _write(self, view: memoryview) -> int:
        assert self.fd is not None
        try:
            return os.write(self.fd, view)
        except OSError as exc:
            raise_if_full(exc)
            raise

    def copy_from(self, source: Readable, chunk: int = CHUNK) -> None:
        while data := source.read(chunk):
            self.write(data)

    def finish(self) -> str:
        """Flush the bytes to disk and close; the digest of everything written."""
        assert self.fd is not None
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise_if_full(exc)
            raise
        finally:
            os.close(self.fd)
            self.fd = None
        return self._hasher.hexdigest()

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)
