"""Bookkeeping of resumable (tus) uploads in Redis: records, the one-writer lock, expiry, limits.

The bytes live on disk (`l1web.store.uploads`); here is what several web processes must agree
on: who owns an upload, how long it is, how far it got (`offset`), when it expires, and how many
bytes each user's unfinished uploads hold against `UPLOAD_INFLIGHT_BYTES`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import cast

import redis

from l1web.state import keys

#: Milliseconds the one-writer lock of an upload lives (a PATCH body is already received when
#: the app sees it, so writing even a large one takes seconds; the lock is released at once after).
LOCK_MS = 600_000

# Reserve bytes against a user's limit, or refuse: KEYS[1] counter, ARGV[1] bytes, ARGV[2] limit.
_RESERVE = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 - now end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
# Delete a record and give its unfinished bytes back, once: KEYS[1] record, KEYS[2] expiry set.
# ARGV[1] = id, ARGV[2] = prefix of the per-user counters.
_DROP = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return 0 end
local done = redis.call('HGET', KEYS[1], 'digest')
local length = tonumber(redis.call('HGET', KEYS[1], 'length') or '0')
if (not done or done == '') and length > 0 then
  local counter = ARGV[2] .. owner
  if tonumber(redis.call('DECRBY', counter, length)) <= 0 then redis.call('DEL', counter) end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# Mark a record finished and give its bytes back, once: KEYS[1] record, KEYS[2] expiry set.
# ARGV[1] id, ARGV[2] counter prefix, ARGV[3] digest, ARGV[4] expiry time.
_FINISH = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return 0 end
local done = redis.call('HGET', KEYS[1], 'digest')
if done and done ~= '' then return 1 end
local length = tonumber(redis.call('HGET', KEYS[1], 'length') or '0')
local counter = ARGV[2] .. owner
if tonumber(redis.call('DECRBY', counter, length)) <= 0 then redis.call('DEL', counter) end
redis.call('HSET', KEYS[1], 'digest', ARGV[3], 'offset', length, 'expires', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Upload:
    """One resumable upload as recorded; `digest` is set once it has entered the store."""

    id: str
    owner: str
    length: int
    offset: int
    expires: float
    created: float
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    digest: str | None = None
    appended: int = 0  # bytes PATCH requests wrote into it: equals `length` when none came twice

    @property
    def finished(self) -> bool:
        return bool(self.digest)

    @classmethod
    def from_fields(cls, upload_id: str, raw: dict[str, str]) -> Upload:
        return cls(id=upload_id, owner=raw["owner"], length=int(raw["length"]), offset=int(raw["offset"]),
                   expires=float(raw["expires"]), created=float(raw["created"]), name=raw.get("name") or None,
                   metadata=json.loads(raw.get("metadata") or "{}"), digest=raw.get("digest") or None,
                   appended=int(raw.get("appended") or 0))


class InflightLimit(Exception):
    """The user's unfinished uploads already hold `held` bytes; this one would pass the limit."""

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


class Uploads:
    """The Redis side of resumable uploads."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._reserve = client.register_script(_RESERVE)
        self._drop = client.register_script(_DROP)
        self._finish = client.register_script(_FINISH)

    @staticmethod
    def new_id() -> str:
        """An unguessable id (32 hex characters): knowing it is still no right to the upload."""
        return secrets.token_hex(16)

    def create(self, owner: str, length: int, *, expiry: float, limit: int, name: str | None,
               metadata: dict[str, str]) -> Upload:
        """Record a new upload, holding `length` bytes against the owner's limit (InflightLimit)."""
        held = int(self._reserve(keys=[keys.uploads_inflight(owner)], args=[length, limit]))
        if held < 0:
            raise InflightLimit(-1 - held)
        now = time.time()
        upload = Upload(id=self.new_id(), owner=owner, length=length, offset=0, expires=now + expiry,
                        created=now, name=name, metadata=metadata)
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.upload(upload.id), mapping={
                "owner": owner, "length": length, "offset": 0, "expires": upload.expires, "created": now,
                "name": name or "", "metadata": json.dumps(metadata), "appended": 0})
            pipe.zadd(keys.uploads_expiry(), {upload.id: upload.expires})
            pipe.execute()
        return upload

    def get(self, upload_id: str) -> Upload | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.upload(upload_id)))  # a decoding client
        return Upload.from_fields(upload_id, raw) if raw.get("owner") else None

    def advance(self, upload_id: str, offset: int, appended: int, expires: float) -> None:
        """Record that the bytes up to `offset` are on disk (called under the upload's lock)."""
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.upload(upload_id), mapping={"offset": offset, "expires": expires})
            pipe.hincrby(keys.upload(upload_id), "appended", appended)
            pipe.zadd(keys.uploads_expiry(), {upload_id: expires})
            pipe.execute()

    def finish(self, upload_id: str, digest: str, expires: float) -> None:
        """The upload entered the store as `digest`: its bytes no longer count as in flight."""
        self._finish(keys=[keys.upload(upload_id), keys.uploads_expiry()],
                     args=[upload_id, keys.uploads_inflight(""), digest, expires])

    def drop(self, upload_id: str) -> bool:
        """Forget the upload (giving its unfinished bytes back); False if it was already gone."""
        return bool(self._drop(keys=[keys.upload(upload_id), keys.uploads_expiry()],
                               args=[upload_id, keys.uploads_inflight("")]))

    def expired(self, now: float | None = None) -> list[str]:
        return list(cast(list[str], self.redis.zrangebyscore(keys.uploads_expiry(), "-inf", now or time.time())))

    def sweep_turn(self, seconds: float, holder: str) -> bool:
        """True for the one caller that may sweep now: the sweep lock, taken for `seconds` and left
        to lapse (not released), so all web processes together sweep once per interval."""
        return bool(self.redis.set(keys.uploads_sweep(), holder, nx=True, px=max(1, int(seconds * 1000))))

    def inflight(self, owner: str) -> int:
        return int(self.redis.get(keys.uploads_inflight(owner)) or 0)

    def lock(self, upload_id: str) -> redis.lock.Lock:
        lock: redis.lock.Lock = self.redis.lock(keys.upload_lock(upload_id), timeout=LOCK_MS / 1000, blocking=False)
        return lock
