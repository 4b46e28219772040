"""Scoped tokens: JWTs signed with the development L2's own key, and the table of issued ones.

The table keeps each token's claims, never the token: a token is re-signed from its claims when
L2 must show it to an L1 at logout (HS256 over the same header and claims is deterministic).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

#: The only signing algorithm issued and accepted.
ALGORITHM = "HS256"
#: Bits of the HMAC signing key.
KEY_BITS = 256
#: Longest token looked at, in characters; ours are about 350.
MAX_TOKEN_LENGTH = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY, sub TEXT NOT NULL, aud TEXT NOT NULL,
    iat INTEGER NOT NULL, exp INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class Issued:
    """One token L2 issued: its claims (the token itself is `Issuer.token_for(issued)`)."""

    jti: str
    sub: str
    aud: str
    iat: int
    exp: int
    revoked: bool = False


@dataclass(frozen=True)
class Verdict:
    """The answer to `/auth/verify`."""

    valid: bool
    username: str | None = None
    l1: str | None = None
    expires_at: int | None = None
    reason: str | None = None

    def as_json(self) -> dict:
        if not self.valid:
            return {"valid": False, "reason": self.reason}
        return {"valid": True, "username": self.username, "l1": self.l1, "expires_at": self.expires_at}


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class Issuer:
    """Issues, verifies and revokes tokens; state lives in `data_dir` (key and SQLite table)."""

    def __init__(self, data_dir: Path, issuer_url: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.issuer_url = issuer_url
        self.db_path = data_dir / "tokens.sqlite3"
        self.key = self._load_key(data_dir / "signing_key.json")
        with self._db() as db:
            db.execute(SCHEMA)

    @staticmethod
    def _load_key(path: Path) -> OctKey:
        if not path.exists():
            # Another process (the CLI beside the server) may have created it first.
            with suppress(FileExistsError):
                _private_file(path, json.dumps(OctKey.generate_key(KEY_BITS).as_dict(private=True)))
        return OctKey.import_key(json.loads(path.read_text()))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=5)
        try:
            with db:
                yield db
        finally:
            db.close()

    def mint(self, username: str, l1: str, ttl: int) -> str:
        """A new token for `username`, valid at `l1` only, for `ttl` seconds."""
        now = int(time.time())
        issued = Issued(secrets.token_urlsafe(16), username, l1.rstrip("/"), now, now + ttl)
        with self._db() as db:
            db.execute("INSERT INTO tokens (jti, sub, aud, iat, exp) VALUES (?, ?, ?, ?, ?)",
                       (issued.jti, issued.sub, issued.aud, issued.iat, issued.exp))
        return self.token_for(issued)

    def token_for(self, issued: Issued) -> str:
        claims = {"iss": self.issuer_url, "sub": issued.sub, "aud": issued.aud,
                  "iat": issued.iat, "exp": issued.exp, "jti": issued.jti}
        return jwt.encode({"alg": ALGORITHM}, claims, self.key, algorithms=[ALGORITHM])

    def decode(self, token: str) -> Issued | None:
        """The issued token this string is, when its signature and claims check out; else None."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            claims = jwt.decode(token, self.key, algorithms=[ALGORITHM]).claims
            JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer_url},
                sub={"essential": True}, aud={"essential": True}, jti={"essential": True},
                exp={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError, TypeError):
            return None
        return self._lookup(str(claims["jti"]))

    def _lookup(self, jti: str) -> Issued | None:
        with self._db() as db:
            row = db.execute("SELECT jti, sub, aud, iat, exp, revoked FROM tokens WHERE jti = ?",
                             (jti,)).fetchone()
        return Issued(row[0], row[1], row[2], row[3], row[4], bool(row[5])) if row else None

    def verify(self, token: str, l1: str) -> Verdict:
        issued = self.decode(token)
        if issued is None:
            return Verdict(False, reason="invalid")
        if issued.revoked:
            return Verdict(False, reason="revoked")
        if issued.aud != l1.rstrip("/"):
            return Verdict(False, reason="wrong_l1")
        return Verdict(True, issued.sub, issued.aud, issued.exp)

    def revoke(self, jti: str, username: str | None = None) -> bool:
        """Revoke one token (only `username`'s, when given); True when something was revoked."""
        query, args = "UPDATE tokens SET revoked = 1 WHERE jti = ? AND revoked = 0", [jti]
        if username is not None:
            query, args = query + " AND sub = ?", [*args, username]
        with self._db() as db:
            return db.execute(query, args).rowcount > 0

    def live_tokens(self, username: str) -> list[Issued]:
        """The user's unrevoked, unexpired tokens, newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT jti, sub, aud, iat, exp FROM tokens WHERE sub = ? AND revoked = 0 AND exp > ?"
                " ORDER BY iat DESC", (username, int(time.time()))).fetchall()
        return [Issued(*row) for row in rows]

    def revoke_user(self, username: str) -> int:
        with self._db() as db:
            return db.execute("UPDATE tokens SET revoked = 1 WHERE sub = ? AND revoked = 0",
                              (username,)).rowcount
