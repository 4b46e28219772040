"""The state manager: the one owner of L1's Redis keys (the seed's HybridStateManager).

`StateManager` groups typed accessors, one small class per concern, over one decoded Redis
client. RQ gets its own raw client (`rq_connection`), because RQ needs bytes responses.
"""

from __future__ import annotations

from typing import cast

import redis
import redis.lock

from l1web.state import keys
from l1web.state.batches import Batches
from l1web.state.cache import CacheIndex
from l1web.state.chunks import RemovedChunks
from l1web.state.claims import Claims, Results
from l1web.state.fair import FairShare
from l1web.state.ipfs import IPFSIndex
from l1web.state.metrics import StepMetrics
from l1web.state.notify import Notifications
from l1web.state.recipes import Recipes
from l1web.state.runs import Runs
from l1web.state.submissions import Submissions
from l1web.state.tokens import Tokens
from l1web.state.uploads import Uploads
from l1web.state.watch import StepWatches
from l1web.state.workers import Workers

#: Largest offset a listing accepts: Redis ranges take 64-bit integers, and nobody pages this far.
MAX_OFFSET = 10**9


def connect(url: str, *, decode: bool = True) -> redis.Redis:
    """A Redis client for `url`; short timeouts so a dead Redis fails fast, never hangs."""
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=30,
    )


class StateManager:
    """Typed access to every `artdag:` key; the app and the workers each hold one."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.results = Results(client)
        self.tokens = Tokens(client)
        self.cache = CacheIndex(client)
        self.runs = Runs(client)
        self.submissions = Submissions(client, self.cache)
        self.claims = Claims(client)
        self.recipes = Recipes(client)
        self.fair = FairShare(client)
        self.ipfs = IPFSIndex(client)
        self.step_metrics = StepMetrics(client)
        self.uploads = Uploads(client)
        self.watch = StepWatches(client)
        self.notify = Notifications(client)
        self.removed_chunks = RemovedChunks(client)
        self.workers = Workers(client)
        self.batches = Batches(client)

    @classmethod
    def from_url(cls, url: str) -> StateManager:
        return cls(connect(url))

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def server_info(self) -> dict[str, object]:
        """Redis's own INFO (version, memory, AOF, uptime, clients) for the status page."""
        return dict(self.redis.info())

    def ipns_status(self) -> dict[str, str] | str | None:
        """Whatever the IPFS sync wrote to `artdag:ipns:status` (a hash or a string); None if unset."""
        key = keys.ipns_status()
        kind = self.redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            return dict(sorted(cast(dict[str, str], self.redis.hgetall(key)).items()))  # a decoding client
        if kind == "string":
            return cast(str | None, self.redis.get(key))  # a decoding client
        return None

    def samples_lock(self, *, timeout: float, wait: float) -> redis.lock.Lock:
        """The start-up lock one process holds while it makes the sample assets."""
        lock: redis.lock.Lock = self.redis.lock(keys.samples_lock(), timeout=timeout, blocking_timeout=wait)
        return lock


__all__ = ["StateManager", "connect", "keys"]
