"""What an L2 token and a user name may look like, and how L1 names a token: its SHA-256."""

from __future__ import annotations

import hashlib
import re

from l1web.errors import BadRequest

#: Longest token accepted, in characters; a JWT from L2 is a few hundred.
MAX_TOKEN_LENGTH = 2048
#: Tokens are opaque to L1 but must be printable URL-safe text (base64url JWTs and the like).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]+")
#: User names L1 accepts from L2; they become parts of Redis keys and paths.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def checked_token(token: str | None) -> str:
    """`token` when it could be a token at all; else 400 before any L2 call or Redis access."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not TOKEN_PATTERN.fullmatch(token):
        raise BadRequest("That sign-in token is malformed.")
    return token


def is_username(name: object) -> bool:
    return isinstance(name, str) and bool(USERNAME_PATTERN.fullmatch(name))


def token_hash(token: str) -> str:
    """The name L1 stores a token under; tokens carry ≥128 random bits, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()
