"""The L2 token behind a browser session, kept so L1 can act for the user at L2 (publishing).

L1 stores tokens only as hashes, and a session only as the SHA-256 of its id. To publish for a
browser user L1 needs the token itself, so it keeps it sealed: AES-GCM under a key derived from
the session id, which lives only in the user's cookie. Redis (and a copy of it) holds ciphertext
that nothing on the server can open; the user's next request, carrying the cookie, can.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from l1web.web import current

#: Bytes of the random AES-GCM nonce stored in front of the ciphertext.
NONCE_BYTES = 12
#: Domain separation for the key derivation (the session id also names the session).
KEY_LABEL = b"artdag-l1 session token seal v1\x00"


def _key(session_id: str) -> bytes:
    return hashlib.sha256(KEY_LABEL + session_id.encode()).digest()


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def keep(session_id: str, token: str, ttl: int) -> None:
    """Seal the session's token for as long as the session lives."""
    nonce = os.urandom(NONCE_BYTES)
    session_hash = _hash(session_id)
    sealed = nonce + AESGCM(_key(session_id)).encrypt(nonce, token.encode(), session_hash.encode())
    current.state().tokens.keep_sealed(session_hash, base64.b64encode(sealed).decode(), ttl)


def unseal(session_id: str) -> str | None:
    """The token of the session this cookie names; None when none was kept (or it won't open)."""
    session_hash = _hash(session_id)
    raw = current.state().tokens.sealed(session_hash)
    if not raw:
        return None
    blob = base64.b64decode(raw)
    try:
        return AESGCM(_key(session_id)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], session_hash.encode()).decode()
    except (InvalidTag, ValueError):
        return None


def forget(session_id: str) -> None:
    current.state().tokens.forget_sealed(_hash(session_id))
