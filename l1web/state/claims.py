"""Step results and render claims: which digest was rendered for a step's cache id, and who
may render it now (both write `artdag:result:{cache_id}`: a claim's commit records the result).

At most one worker renders a cache id at a time, and stale holders are fenced.

A claim is `artdag:claim:{cache_id}` = `<fence>:<holder>`, set with NX and an expiry that the
holder renews while it works. The fence comes from a per-cache-id counter, so a holder whose
claim expired (and was taken over) carries an old token: its renewals fail and its result is
not recorded, however late it finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis

from l1web.state import keys

# KEYS: claim, fence; ARGV: holder, ttl ms
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
local token = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""

# `_ACQUIRE` unless a result is recorded: KEYS: claim, fence, result; ARGV: holder, ttl ms.
# Returns {recorded digest or '', token or ''}.
_RESULT_OR_ACQUIRE = """
local recorded = redis.call('GET', KEYS[3])
if recorded then return {recorded, ''} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'', ''} end
local fence = redis.call('INCR', KEYS[2])
local token = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {'', token}
"""

# KEYS: claim; ARGV: token, ttl ms
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS: claim; ARGV: holder. Drops the claim only when that holder took it (its token ends in ":holder").
_RELEASE_HELD_BY = """
local token = redis.call('GET', KEYS[1])
if token and string.sub(token, -(#ARGV[1] + 1)) == ':' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: claim, result; ARGV: token, digest
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: claim; ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Claims:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._result_or_acquire = client.register_script(_RESULT_OR_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._release_held_by = client.register_script(_RELEASE_HELD_BY)

    def acquire(self, cache_id: str, holder: str, ttl: float = keys.CLAIM_TTL) -> str | None:
        """A claim token if this holder now owns the cache id; None if someone else does."""
        token = self._acquire(keys=[keys.claim(cache_id), keys.fence(cache_id)],
                              args=[holder, int(ttl * 1000)])
        return token or None

    def result_or_acquire(self, cache_id: str, holder: str,
                          ttl: float = keys.CLAIM_TTL) -> tuple[str | None, str | None]:
        """(the recorded result, None) when the cache id has one; else `acquire`'s answer as
        (None, token or None). One round trip where a step looked its result up, then claimed."""
        recorded, token = self._result_or_acquire(keys=[keys.claim(cache_id), keys.fence(cache_id),
                                                        keys.result(cache_id)], args=[holder, int(ttl * 1000)])
        return _text(recorded) or None, _text(token) or None

    def result_or_acquire_along(self, cache_id: str, holder: str, along: Callable[[redis.client.Pipeline], object],
                                ttl: float = keys.CLAIM_TTL) -> tuple[str | None, str | None, list[Any]]:
        """`result_or_acquire` sent with the writes `along` queues on the same pipeline (a step's
        first progress and log line, issue 19: one round trip fewer per step); their answers
        come back third, exceptions in place (NOSCRIPT after a Redis restart: the caller sends
        its writes again). The script goes by its SHA: a redis-py `Script` in a pipeline asks
        `SCRIPT EXISTS` first, a round trip of its own."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._result_or_acquire.sha, 3, keys.claim(cache_id), keys.fence(cache_id),
                         keys.result(cache_id), holder, int(ttl * 1000))
            along(pipe)
            answers = pipe.execute(raise_on_error=False)
        first, rest = answers[0], answers[1:]
        if isinstance(first, redis.exceptions.NoScriptError):  # not run: ask again, loading the script
            recorded, token = self.result_or_acquire(cache_id, holder, ttl)
            return recorded, token, rest
        if isinstance(first, Exception):
            raise first
        recorded, token = first
        return _text(recorded) or None, _text(token) or None, rest

    def renew(self, cache_id: str, token: str, ttl: float = keys.CLAIM_TTL) -> bool:
        return bool(self._renew(keys=[keys.claim(cache_id)], args=[token, int(ttl * 1000)]))

    def commit(self, cache_id: str, token: str, digest: str) -> bool:
        """Record the result and drop the claim, only if `token` still holds it."""
        return bool(self._commit(keys=[keys.claim(cache_id), keys.result(cache_id)], args=[token, digest]))

    def queue_commit(self, pipe: redis.client.Pipeline, cache_id: str, token: str, digest: str) -> None:
        """`commit` queued on a pipeline that carries other writes (by its script's SHA);
        `committed` reads its answer."""
        pipe.evalsha(self._commit.sha, 2, keys.claim(cache_id), keys.result(cache_id), token, digest)

    def committed(self, answer: object, cache_id: str, token: str, digest: str) -> bool:
        """`queue_commit`'s answer as `commit` gives it (after a Redis restart, NOSCRIPT: committed again)."""
        if isinstance(answer, redis.exceptions.NoScriptError):
            return self.commit(cache_id, token, digest)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    def release(self, cache_id: str, token: str) -> bool:
        return bool(self._release(keys=[keys.claim(cache_id)], args=[token]))

    def release_held_by(self, cache_id: str, holder: str) -> bool:
        """Drop the claim on `cache_id` if `holder` (an attempt's id) took it: an attempt that died
        (its horse killed) cannot renew or release its claim, and its retry would otherwise wait
        for the claim to lapse (`CLAIM_TTL`, 60 s) before rendering. False when another holds it."""
        return bool(self._release_held_by(keys=[keys.claim(cache_id)], args=[holder]))

    def holder(self, cache_id: str) -> str | None:
        return cast(str | None, self.redis.get(keys.claim(cache_id)))  # a decoding client


class Results:
    """Which content digest was rendered for which step cache id.

    Satisfies the engine's `ResultIndex` protocol over Redis.
    """

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


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
