"""Content names: SHA3-256 hex digests, validated before they touch a path, and their fan-out."""

from __future__ import annotations

from pathlib import Path

from l1web.engine.canonical import DIGEST_RE as DIGEST
from l1web.engine.canonical import is_digest, new_hasher
from l1web.errors import InvalidHash

__all__ = ["DIGEST", "FANOUT", "HASH_CHUNK", "check_digest", "digest_for", "hash_file", "is_digest", "location",
           "new_hasher"]
#: Hex characters of the digest used for the fan-out directory.
FANOUT = 2
#: Bytes read at a time when hashing a stored file (1 MiB).
HASH_CHUNK = 1024 * 1024


def check_digest(value: str) -> str:
    """The digest itself, or InvalidHash (400) naming what is wrong with it."""
    if not is_digest(value):
        shown = value[:80].encode("unicode_escape").decode("ascii") if isinstance(value, str) else "?"
        raise InvalidHash(f"not a content hash: {shown!r} (expected 64 lower-case hex characters)")
    return value


def location(root: Path, digest: str) -> Path:
    """Where the item named `digest` lives: `root/ab/abcdef…`. Inverse of `digest_for`."""
    check_digest(digest)
    return root / digest[:FANOUT] / digest


def digest_for(root: Path, path: Path) -> str:
    """The digest a stored path names; InvalidHash for anything `location` would not produce."""
    relative = path.relative_to(root)
    if len(relative.parts) != 2:
        raise InvalidHash(f"not a content path: {path}")
    fanout, digest = relative.parts
    check_digest(digest)
    if fanout != digest[:FANOUT]:
        raise InvalidHash(f"content path in the wrong fan-out directory: {path}")
    return digest


def hash_file(path: Path) -> str:
    """SHA3-256 hex of a file's bytes, read in chunks."""
    hasher = new_hasher()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(HASH_CHUNK)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
    return hasher.hexdigest()
