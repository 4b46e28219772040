"""Removed chunks: the temporary chunk files of joined steps, which every host deletes.

A chunked step's chunks (engine/chunks.py) travel between hosts like any step output, so copies
may sit in several cache directories. The worker that joins them removes its own copies and the
index entries, then lists the digests here; every worker sweeps its own cache directory against
this list after each step, and the L1 server deletes its copy when a worker asks
(`DELETE /worker/cache/{hash}` accepts only digests listed here).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import cast

import redis

from l1web.state import keys


class RemovedChunks:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def add(self, digests: Iterable[str]) -> None:
        now = time.time()
        mapping = {digest: now for digest in digests}
        if mapping:
            self.redis.zadd(keys.chunks_removed(), mapping)

    def discard(self, digest: str) -> None:
        """The digest was rendered again (x264 is deterministic): no host may sweep it now."""
        self.redis.zrem(keys.chunks_removed(), digest)

    def contains(self, digest: str) -> bool:
        return self.redis.zscore(keys.chunks_removed(), digest) is not None

    def recent(self) -> list[str]:
        """Digests removed within CHUNKS_REMOVED_TTL (older entries are dropped)."""
        key = keys.chunks_removed()
        with self.redis.pipeline(transaction=False) as pipe:  # one round trip: every step's end asks
            pipe.zremrangebyscore(key, "-inf", time.time() - keys.CHUNKS_REMOVED_TTL)
            pipe.zrange(key, 0, -1)
            _, digests = pipe.execute()
        return list(cast(list[str], digests))  # a decoding client
