"""Canonical JSON and SHA3-256: the one recipe every id in the engine is built from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1 << 16


def canonical_json(value: object) -> str:
    """Sorted keys at every level, no whitespace, UTF-8 text; NaN and infinities refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha3_json(value: object) -> str:
    """SHA3-256 hex of the canonical JSON of a value."""
    return hashlib.sha3_256(canonical_json(value).encode("utf-8")).hexdigest()


def sha3_file(path: Path) -> str:
    """SHA3-256 hex of a file's bytes (its content hash)."""
    digest = hashlib.sha3_256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
