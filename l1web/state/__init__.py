"""The state manager: the one owner of L1's Redis keys (the seed's HybridStateManager).

`StateManager` groups typed accessors, one small class per concern, over one decoded Redis
client. RQ gets its own raw client (`rq_connection`), because RQ needs bytes responses.
"""

from __future__ import annotations

import redis

from l1web.state import keys
from l1web.state.cache import CacheIndex
from l1web.state.claims import Claims
from l1web.state.notify import Notifications
from l1web.state.recipes import Recipes
from l1web.state.results import Results
from l1web.state.runs import Runs
from l1web.state.tokens import Tokens
from l1web.state.watch import StepWatches

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
        self.claims = Claims(client)
        self.recipes = Recipes(client)
        self.watch = StepWatches(client)
        self.notify = Notifications(client)

    @classmethod
    def from_url(cls, url: str) -> StateManager:
        return cls(connect(url))

    def ping(self) -> bool:
        return bool(self.redis.ping())


__all__ = ["StateManager", "connect", "keys"]
