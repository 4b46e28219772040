"""The development L2's settings, read once from `DEVL2_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Port the development L2 listens on (`make run` uses it).
DEFAULT_PORT = 8200
#: Seconds an issued token stays valid (7 days); below L1's 30-day revocation memory.
DEFAULT_TOKEN_TTL = 7 * 24 * 3600
#: Seconds L2 waits for an L1 to answer `/auth/revoke-user` at logout.
DEFAULT_CALL_TIMEOUT = 3.0
#: The users of a fresh machine: name → password. Development only.
DEFAULT_USERS = {"alice": "alice", "bob": "bob", "admin": "admin"}


def _users(value: str) -> dict[str, str]:
    """`alice:pw1 bob:pw2` → {"alice": "pw1", "bob": "pw2"}."""
    pairs = (item.split(":", 1) for item in value.replace(",", " ").split() if ":" in item)
    return {name: password for name, password in pairs}


@dataclass(frozen=True)
class Config:
    """Everything configurable about the development L2."""

    data_dir: Path
    public_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    #: The L1s users may attach (tokens are scoped to one of these).
    l1_urls: tuple[str, ...] = ("http://127.0.0.1:8100",)
    users: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    token_ttl: int = DEFAULT_TOKEN_TTL
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        port = int(env.get("DEVL2_PORT", DEFAULT_PORT))
        host = env.get("DEVL2_HOST", "127.0.0.1")
        l1_urls = env.get("DEVL2_L1_URL", "http://127.0.0.1:8100").replace(",", " ").split()
        return cls(
            data_dir=Path(env.get("DEVL2_DATA_DIR", "~/.artdag/devl2")).expanduser(),
            public_url=env.get("DEVL2_PUBLIC_URL", f"http://{host}:{port}").rstrip("/"),
            l1_urls=tuple(url.rstrip("/") for url in l1_urls),
            users=_users(env["DEVL2_USERS"]) if env.get("DEVL2_USERS") else dict(DEFAULT_USERS),
            token_ttl=int(env.get("DEVL2_TOKEN_TTL", DEFAULT_TOKEN_TTL)),
            host=host,
            port=port,
        )
