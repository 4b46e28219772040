"""Images the engine writes, hashed as their bytes go out, so the store need not read them back.

A render output used to be hashed after it was written: read back and hashed on the job's
critical path, 1.0-1.7 ms of a 451×300 PNG's store (`bench/trace_small_job.py`, issue 19).
Here each block is hashed as Pillow's encoder hands it to be written, while it is still in the
CPU's cache (`save_image`). Measured in process on 451×300 photos (234 KB PNGs, p50 of 30):
encode alone 9.32 / 9.58 ms, encode then `hash_file` 9.81 / 10.16, hashed in the write 9.53 /
9.81, hashed by a kept thread beside the encoder (Pillow releases the GIL while it compresses)
9.87 / 9.96: the hand-off costs what the overlap saves, so no thread.

The store asks `take` for a file's digest (and its format and size, which spare the store
opening it to describe it): they are given only for the file as it was written, whatever its
name now (renders write to a temporary name and rename it into place): same device and inode,
same size and modification time, all kept by a rename; otherwise None and the store hashes and
describes the file itself, as before. Nothing but this process's own encoder writes through
here, so the digest is of exactly the bytes on disk.

A written file is held open (read-only) until its digest is taken or forgotten: an inode number
is reused once its file is deleted and closed, and a file's times only move in steps of the
kernel's clock tick, so a new file of the same size made in the same tick where a remembered
one was deleted would have matched it. While the descriptor is open the inode stays that
file's, so a (device, inode) match is that file and no other.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from PIL import Image

from l1web.engine.canonical import new_hasher
from l1web.engine.media import MediaInfo

#: Digests remembered at most at once (outputs written but not yet stored: a step has one; the
#: bounds only matter for renders that failed after writing, whose entries nobody takes, and
#: whose deleted files stay on disk while they are held open), and the bytes they may hold.
MAX_REMEMBERED = 64
MAX_HELD_BYTES = 1 << 30


@dataclass(frozen=True)
class Written:
    """What the engine knows of a file it wrote: its digest, and what detection would find
    (format and size; the store need not open it again to describe it)."""

    digest: str
    info: MediaInfo


_remembered: dict[tuple[int, int], tuple[int, tuple[int, int], Written]] = {}  # (dev, ino) → (fd, (size, mtime), …)
_lock = threading.Lock()


def _forget_all() -> None:
    for fd, _signature, _written in _remembered.values():
        os.close(fd)
    _remembered.clear()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _forget_all()  # the child's copies of the descriptors; the parent keeps its own


os.register_at_fork(after_in_child=_after_fork)


class _HashingFile:
    """A write-only file for Pillow: each block is hashed, then written.

    It has no `fileno`, so Pillow's encoders write every byte through `write` (given a file
    descriptor, some would write to it directly, past the hash)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.hasher = handle, new_hasher()

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        return int(self.handle.write(data))

    def flush(self) -> None:
        self.handle.flush()

    def tell(self) -> int:
        return int(self.handle.tell())


def save_image(image: Image.Image, path: Path, fmt: str, **options: Any) -> None:
    """`image.save(path, fmt, **options)`, remembering the digest of the bytes written."""
    with open(path, "wb") as handle:
        out = _HashingFile(handle)
        image.save(cast(IO[bytes], out), format=fmt, **options)  # all Pillow uses of a file: write, flush, tell
        digest = out.hasher.hexdigest()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # holds the inode (the module's doc)
    stat = os.fstat(fd)
    info = MediaInfo("image", fmt.lower(), image.width, image.height)
    with _lock:
        replaced = _remembered.pop((stat.st_dev, stat.st_ino), None)
        if replaced is not None:  # written again in place: the same inode, held once
            os.close(replaced[0])
        _remembered[stat.st_dev, stat.st_ino] = (fd, (stat.st_size, stat.st_mtime_ns), Written(digest, info))
        held = sum(signature[0] for _fd, signature, _written in _remembered.values())
        while len(_remembered) > MAX_REMEMBERED or (held > MAX_HELD_BYTES and len(_remembered) > 1):
            oldest = next(iter(_remembered))  # the oldest first: the latest is about to be taken
            old_fd, (old_size, _mtime), _written = _remembered.pop(oldest)
            os.close(old_fd)
            held -= old_size


def take(path: Path) -> Written | None:
    """What `save_image` knew of the file at `path`, if it wrote it (under any name) and the file
    has not changed since; else None."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    with _lock:
        entry = _remembered.pop((stat.st_dev, stat.st_ino), None)
    if entry is None:
        return None
    fd, signature, found = entry
    os.close(fd)
    return found if signature == (stat.st_size, stat.st_mtime_ns) else None
