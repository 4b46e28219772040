"""Step results: which content digest was rendered for which step cache id."""

from __future__ import annotations

from typing import cast

import redis

from l1web.state import keys


class Results:
    """Satisfies the engine's `ResultIndex` protocol over Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def get_result(self, cache_id: str) -> str | None:
        return cast(str | None, self.redis.get(keys.result(cache_id)))  # a decoding client

    def set_result(self, cache_id: str, digest: str) -> None:
        self.redis.set(keys.result(cache_id), digest)

    def forget_result(self, cache_id: str) -> None:
        self.redis.delete(keys.result(cache_id))

    def set_if_absent(self, cache_id: str, digest: str) -> bool:
        """Record a result unless one is known already (a peer's never replaces ours)."""
        return bool(self.redis.set(keys.result(cache_id), digest, nx=True))
