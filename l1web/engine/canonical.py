"""Canonical JSON and SHA3-256: the one recipe every id in the engine is built from."""

from __future__ import annotations

import hashlib
import json
import re

#: A content name: exactly 64 lower-case hex characters (SHA3-256 hex, ASCII only, no newline).
#: The one definition: the store, recipes, the schema, the run service and uploads all use it.
DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")


def is_digest(value: object) -> bool:
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def new_hasher(data: bytes = b"") -> hashlib._Hash:
    """The content hash (SHA3-256), for streaming bytes through it."""
    return hashlib.sha3_256(data)


def canonical_json(value: object) -> str:
    """Sorted keys at every level, no whitespace, UTF-8 text; NaN and infinities refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha3_json(value: object) -> str:
    """SHA3-256 hex of the canonical JSON of a value."""
    return new_hasher(canonical_json(value).encode("utf-8")).hexdigest()
