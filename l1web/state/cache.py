"""The content store's index in Redis: item metadata, listings, assets, references, quarantine.

The files live on disk (`l1web.store`); this class owns what is known about them. Every step
that must not race another (record vs. record, delete vs. add_ref) is one Lua script or one
WATCH transaction, so "delete unless referenced" can never lose a run's input.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import redis
import redis.lock

from l1web.access import Item
from l1web.errors import BadRequest, NotFound
from l1web.state import keys

#: Largest page a listing returns, whatever the client asks for.
MAX_PAGE = 200
#: Extra entries fetched past a cursor to step over items created in the same instant.
CURSOR_SLACK = 16
#: Seconds to wait for another process's item lock before giving up.
LOCK_WAIT = 20
#: Prefix of a reference held by a named asset (`asset:cat`).
ASSET_REF = "asset:"
#: Blocker reported by a refused delete when the item is published to L2.
PUBLISHED = "published"
#: Asset names: short, lower-case, safe in URLs and recipes.
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

# KEYS: item, index, stats, quarantine[, owner index]. ARGV: digest, created, verified, fields...
_RECORD = """
local new = redis.call('EXISTS', KEYS[1]) == 0
if new then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HINCRBY', KEYS[3], 'items_stored', 1)
  redis.call('HINCRBY', KEYS[3], 'bytes_stored', redis.call('HGET', KEYS[1], 'size') or 0)
else
  redis.call('HINCRBY', KEYS[3], 'dedup_hits', 1)
end
redis.call('HSET', KEYS[1], 'verified', ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[1])
if KEYS[5] then redis.call('ZADD', KEYS[5], 'NX', ARGV[2], ARGV[1]) end
if new then return 1 else return 0 end
"""

# KEYS: item, index, refs, published, stats[, owner index]. ARGV: digest.
# Returns {1} when deleted, {0, blocker...} when refused, {-1} when unknown.
_DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local blockers = redis.call('SMEMBERS', KEYS[3])
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then table.insert(blockers, 'published') end
if #blockers > 0 then return {0, unpack(blockers)} end
local size = tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[6] then redis.call('ZREM', KEYS[6], ARGV[1]) end
redis.call('HINCRBY', KEYS[5], 'items_stored', -1)
redis.call('HINCRBY', KEYS[5], 'bytes_stored', -size)
return {1}
"""

# KEYS: item, refs. ARGV: ref. Only an item that exists can gain a reference.
_ADD_REF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: item, index, quarantine, stats, the holders' owner indexes... ARGV: digest, record JSON.
_QUARANTINE = """
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 5, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[4], 'items_stored', -1)
  redis.call('HINCRBY', KEYS[4], 'bytes_stored', -tonumber(redis.call('HGET', KEYS[1], 'size') or '0'))
  redis.call('DEL', KEYS[1])
end
redis.call('HINCRBY', KEYS[4], 'quarantined', 1)
return 1
"""


# KEYS: index, quarantine, the asker's owner index, published, shared, assets. ARGV: the item key
# prefix, the digests joined by ','. Returns one character per digest (64 + the _EXISTS/_HELD/...
# bits), the owners of the digests that exist, in order ('' for an ownerless system item), and
# position, record pairs for the quarantined ones (1-based; an unknown hash has no record).
# Existence is read from the index (`_RECORD`, `_DELETE` and `_QUARANTINE` change it together with
# the item's hash), so the other facts are read only for the digests that exist.
_ACCESS = """
local digests = {}
for digest in string.gmatch(ARGV[2], '[^,]+') do digests[#digests + 1] = digest end
local flags, owners = {}, {}
for i = 1, #digests do flags[i] = '@' end
local stored = redis.call('ZMSCORE', KEYS[1], unpack(digests))
local at, found = {}, {}
for i = 1, #digests do
  if stored[i] then at[#at + 1] = i; found[#found + 1] = digests[i] end
end
if #found > 0 then
  local quarantined = redis.call('HMGET', KEYS[2], unpack(found))
  local held = redis.call('ZMSCORE', KEYS[3], unpack(found))
  local published = redis.call('SMISMEMBER', KEYS[4], unpack(found))
  local shared = redis.call('ZMSCORE', KEYS[5], unpack(found))
  local assets = {}
  for _, digest in ipairs(redis.call('HVALS', KEYS[6])) do assets[digest] = true end
  for j, digest in ipairs(found) do
    if not quarantined[j] then
      local bits = 1
      if held[j] then bits = bits + 2 end
      if assets[digest] then bits = bits + 4 end
      if published[j] == 1 then bits = bits + 8 end
      if shared[j] then bits = bits + 16 end
      flags[at[j]] = string.char(64 + bits)
      owners[#owners + 1] = redis.call('HGET', ARGV[1] .. digest, 'owner') or ''
    end
  end
end
local absent, places, records = {}, {}, {}
for i = 1, #digests do
  if flags[i] == '@' then absent[#absent + 1] = digests[i]; places[#places + 1] = i end
end
if #absent > 0 then
  for j, record in ipairs(redis.call('HMGET', KEYS[2], unpack(absent))) do
    if record then records[#records + 1] = places[j]; records[#records + 1] = record end
  end
end
return {table.concat(flags), owners, records}
"""
#: Bits of a digest's flag in `_ACCESS`'s answer.
_EXISTS, _HELD, _ASSET, _PUBLISHED, _SHARED = 1, 2, 4, 8, 16
#: The facts of every unknown hash (frozen, so one instance serves them all).
_ABSENT = Item(exists=False)
#: What a quarantine record keeps of who could see the item (`l1web.access` reads these facts).
_SEEN = ("owner", "holders", "asset", "published", "shared")
#: The owner of a quarantined item whose record names nobody (written before records kept who
#: could see the item): not None, which would make it an ownerless, public system item, and no
#: user's name, so only admins are told why it is gone.
_UNRECORDED = ""


def _quarantined_item(raw: str, asker: str | None) -> Item:
    """The access facts of a quarantined item, from its quarantine record, for `asker`."""
    record = json.loads(raw)
    if "holders" not in record:
        return Item(exists=False, owner=_UNRECORDED, quarantined=record["reason"])
    held = bool(asker) and asker in record["holders"]
    return Item(exists=False, owner=record["owner"], holders=frozenset([asker]) if held and asker else frozenset(),
                asset=record["asset"], published=record["published"], shared=record["shared"],
                quarantined=record["reason"])


@dataclass(frozen=True)
class ItemMeta:
    """What the index knows about one stored item."""

    digest: str
    size: int
    kind: str = "other"
    format: str = ""
    mimetype: str = "application/octet-stream"
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    created: float = 0.0
    source: str = ""
    owner: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_fields(self) -> dict[str, str]:
        """The Redis hash fields; absent values are simply not stored."""
        # Not `asdict`, which copies every value recursively: these are plain scalars (2 % of a
        # trivial run's job CPU went to `asdict` here, profiled).
        return {f.name: str(v) for f in fields(self) if (v := getattr(self, f.name)) is not None and v != ""}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> ItemMeta:
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for name, kind in types.items():
            if name not in raw:
                continue
            value = raw[name]
            if "int" in str(kind):
                values[name] = int(value)
            elif "float" in str(kind):
                values[name] = float(value)
            else:
                values[name] = value
        return cls(**values)  # type: ignore[arg-type]  # each value converted to its field's type above


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first; `next_cursor` is None on the last page."""

    items: list[ItemMeta]
    next_cursor: str | None
    total: int


@dataclass(frozen=True)
class DeleteOutcome:
    """`deleted` is False when something still needs the item; `blockers` says what."""

    deleted: bool
    blockers: tuple[str, ...] = ()


def _cursor_for(meta: ItemMeta) -> str:
    return f"{meta.created!r}:{meta.digest}"


def _parse_cursor(cursor: str) -> tuple[float, str]:
    score, _, digest = cursor.partition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "nan" or "inf" would reach Redis as a range bound and fail there
        raise BadRequest(f"malformed cursor {cursor[:80]!r}")
    return value, digest


def _access_call(digests: Sequence[str], asker: str) -> tuple[list[str], list[str]]:
    """`_ACCESS`'s keys and arguments for `digests` asked by `asker`."""
    return ([keys.cache_index(), keys.cache_quarantine(), keys.cache_owner_index(asker), keys.cache_published(),
             keys.cache_shared(), keys.assets()], [keys.cache_item(""), ",".join(digests)])


def items_from_access(answer: Sequence[Any], digests: Sequence[str], asker: str) -> list[Item]:
    """The `Item` of each of `digests` from `_ACCESS`'s answer."""
    flags, owners, records = answer
    holders = frozenset([asker]) if asker else frozenset()
    found = iter(owners)
    kept = {int(records[i]) - 1: records[i + 1] for i in range(0, len(records), 2)}  # (1-based place, record)
    items = []
    if len(flags) != len(digests):  # a ',' inside a 'digest' would split it in two
        raise ValueError("access_items: a digest may not contain ','")
    for place, flag in enumerate(flags):
        bits = ord(flag) - 64
        if not bits & _EXISTS:
            record = kept.get(place)
            items.append(_quarantined_item(record, asker) if record else _ABSENT)
            continue
        items.append(Item(exists=True, owner=next(found) or None,
                          holders=holders if bits & _HELD else frozenset(), asset=bool(bits & _ASSET),
                          published=bool(bits & _PUBLISHED), shared=bool(bits & _SHARED)))
    return items


# An item lock's release: only by the token that took it (as redis-py's `Lock` releases).
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ItemLock:
    """An item's lock (`CacheIndex.lock`'s key, taken as redis-py's `Lock` takes it: `SET NX PX`
    with a random token, released only by that token, so the two exclude each other), written
    here so that it can ride in the pipelines of the item's read and record: storing a render
    output took 4 round trips (read, lock, record, unlock), now 2 (`CacheIndex.get_locked`,
    `record_and_release`; measured in docs/performance.md)."""

    #: Seconds between tries while another process holds the lock (redis-py's `Lock` default).
    POLL = 0.1

    def __init__(self, client: redis.Redis, release_script: Any, key: str) -> None:
        import uuid

        self.redis, self._release, self.key = client, release_script, key
        self.token = uuid.uuid4().hex
        self.released = False

    def queue_acquire(self, pipe: redis.client.Pipeline) -> None:
        pipe.set(self.key, self.token, nx=True, px=keys.CACHE_LOCK_TTL * 1000)

    def acquire(self) -> None:
        """Wait for the lock, at most `LOCK_WAIT` seconds."""
        deadline = time.monotonic() + LOCK_WAIT
        while not self.redis.set(self.key, self.token, nx=True, px=keys.CACHE_LOCK_TTL * 1000):
            if time.monotonic() > deadline:
                raise redis.exceptions.LockError("Unable to acquire lock within the time specified")
            time.sleep(self.POLL)

    def queue_release(self, pipe: redis.client.Pipeline) -> None:
        pipe.evalsha(self._release.sha, 1, self.key, self.token)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._release(keys=[self.key], args=[self.token])


class CacheIndex:
    """The Redis side of the content store; `StateManager.cache` is one of these."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record = client.register_script(_RECORD)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._delete = client.register_script(_DELETE)
        self._add_ref = client.register_script(_ADD_REF)
        self._quarantine = client.register_script(_QUARANTINE)
        self._access = client.register_script(_ACCESS)

    # Items ------------------------------------------------------------------------------------
    def record(self, meta: ItemMeta, *, verified: str) -> bool:
        """Index a stored item; True when new. A known item keeps its first metadata."""
        item_keys, args = self._record_call(meta, verified)
        return bool(self._record(keys=item_keys, args=args))

    @staticmethod
    def _record_call(meta: ItemMeta, verified: str) -> tuple[list[str], list[str]]:
        item_keys = [keys.cache_item(meta.digest), keys.cache_index(), keys.stats(), keys.cache_quarantine()]
        if meta.owner:
            item_keys.append(keys.cache_owner_index(meta.owner))
        pairs = [part for pair in meta.to_fields().items() for part in pair]
        return item_keys, [meta.digest, repr(meta.created), verified, *pairs]

    def get(self, digest: str) -> ItemMeta | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.cache_item(digest)))  # a decoding client
        return ItemMeta.from_fields(raw) if raw else None

    def require(self, digest: str) -> ItemMeta:
        meta = self.get(digest)
        if meta is None:
            raise NotFound(f"no cached item {digest}")
        return meta

    def exists(self, digest: str) -> bool:
        return bool(self.redis.exists(keys.cache_item(digest)))

    def uploaded_by(self, digest: str, owner: str) -> bool:
        """True when `owner` stored these bytes (first or later: each uploader's index has it)."""
        return self.redis.zscore(keys.cache_owner_index(owner), digest) is not None

    def access_item(self, digest: str, asker: str | None) -> Item:
        """The facts `l1web.access` decides on, for `asker` (one Redis round trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.cache_item(digest), "size")
            pipe.hget(keys.cache_item(digest), "owner")
            pipe.zscore(keys.cache_owner_index(asker or ""), digest)
            pipe.hvals(keys.assets())
            pipe.sismember(keys.cache_published(), digest)
            pipe.zscore(keys.cache_shared(), digest)
            pipe.hget(keys.cache_quarantine(), digest)
            size, owner, held, assets, published, shared, quarantined = pipe.execute()
        if quarantined is not None:
            return _quarantined_item(quarantined, asker)
        return Item(exists=size is not None, owner=owner or None,
                    holders=frozenset([asker]) if asker and held is not None else frozenset(),
                    asset=digest in assets, published=bool(published), shared=shared is not None)

    def grant(self, digest: str, owner: str) -> None:
        """List an existing item among `owner`'s own (an output their run reused)."""
        if self.exists(digest):
            self.redis.zadd(keys.cache_owner_index(owner), {digest: time.time()}, nx=True)

    def set_shared(self, digest: str, shared: bool) -> None:
        """Share an item with every signed-in user, or stop sharing it."""
        if shared:
            created = self.require(digest).created
            self.redis.zadd(keys.cache_shared(), {digest: created})
        else:
            self.redis.zrem(keys.cache_shared(), digest)

    def shared(self, limit: int = MAX_PAGE) -> list[ItemMeta]:
        """Items shared on purpose, and published ones (public anyway), newest first."""
        digests = set(cast(list[str], self.redis.zrevrange(keys.cache_shared(), 0, limit - 1)))  # a decoding client
        digests.update(cast(list[str], self.redis.srandmember(keys.cache_published(), limit)) or [])
        metas = [m for m in map(self.get, sorted(digests)) if m is not None]
        return sorted(metas, key=lambda m: m.created, reverse=True)[:limit]

    def is_shared(self, digest: str) -> bool:
        return self.redis.zscore(keys.cache_shared(), digest) is not None

    def count(self) -> int:
        return int(self.redis.zcard(keys.cache_index()))

    def list(
        self, *, limit: int, cursor: str | None = None, offset: int = 0, owner: str | None = None,
    ) -> Page:
        """Newest first. Pass the previous page's `next_cursor`, or an `offset` for page numbers."""
        limit = max(1, min(limit, MAX_PAGE))
        index = keys.cache_owner_index(owner) if owner else keys.cache_index()
        total = int(self.redis.zcard(index))
        after: tuple[float, str] | None = None
        if cursor:
            after = _parse_cursor(cursor)
            offset = int(self.redis.zcount(index, f"({after[0]!r}", "+inf"))
        window = cast(list[tuple[str, float]],  # a decoding client
                      self.redis.zrevrange(index, offset, offset + limit + CURSOR_SLACK - 1, withscores=True))
        digests = [d for d, score in window if after is None or score < after[0] or d < after[1]]
        digests = digests[: limit + 1]
        metas = [m for m in map(self.get, digests[:limit]) if m is not None]
        more = len(digests) > limit
        return Page(metas, _cursor_for(metas[-1]) if more and metas else None, total)

    def lock(self, digest: str) -> redis.lock.Lock:
        """Held while the item's file and its index entry change together (store vs. delete)."""
        return cast(redis.lock.Lock, self.redis.lock(keys.cache_lock(digest), timeout=keys.CACHE_LOCK_TTL,
                                                     blocking_timeout=LOCK_WAIT))

    def get_locked(self, digest: str) -> tuple[ItemMeta | None, str | None, ItemLock]:
        """(the item's metadata, its verified signature, its lock, now held): the lock taken and
        the item read under it in one round trip (`ItemLock`); waits for another holder as
        `lock` does (`redis.exceptions.LockError` after `LOCK_WAIT` seconds)."""
        lock = ItemLock(self.redis, self._release_lock, keys.cache_lock(digest))
        with self.redis.pipeline(transaction=False) as pipe:
            lock.queue_acquire(pipe)
            pipe.hgetall(keys.cache_item(digest))
            taken, raw = pipe.execute()
        if not taken:
            lock.acquire()
            raw = self.redis.hgetall(keys.cache_item(digest))
        found = cast(dict[str, str], raw)  # a decoding client
        return (ItemMeta.from_fields(found) if found else None), found.get("verified"), lock

    def record_and_release(self, meta: ItemMeta, *, verified: str, lock: ItemLock) -> bool:
        """`record`, and `lock` released after it in the same round trip; True when new."""
        item_keys, args = self._record_call(meta, verified)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._record.sha, len(item_keys), *item_keys, *args)
            lock.queue_release(pipe)
            new, released = pipe.execute(raise_on_error=False)
        if isinstance(new, redis.exceptions.NoScriptError):  # Redis restarted: scripts are loaded again
            new = self._record(keys=item_keys, args=args)
        if isinstance(released, redis.exceptions.NoScriptError):
            lock.release()
        lock.released = True
        if isinstance(new, Exception):
            raise new
        return bool(new)

    # Verification ------------------------------------------------------------------------------
    def check(self, digest: str) -> tuple[bool, str | None, str | None]:
        """(indexed?, verified signature, quarantine reason) in one round trip: what every read asks."""
        return self.check_image(digest)[:3]

    def check_image(self, digest: str) -> tuple[bool, str | None, str | None, tuple[str, int, int] | None]:
        """`check`, and the recorded (format, width, height) when the item is an image, in the
        same round trip (the plan's analysis need not open a stored image for them)."""
        with self.redis.pipeline(transaction=False) as pipe:
            # Every recorded item has a size: its presence says the item is indexed.
            pipe.hmget(keys.cache_item(digest), "size", "verified", "kind", "format", "width", "height")
            pipe.hget(keys.cache_quarantine(), digest)
            (size, verified, kind, fmt, width, height), quarantined = pipe.execute()
        image = (fmt, int(width), int(height)) if kind == "image" and fmt and width and height else None
        return size is not None, verified, (json.loads(quarantined)["reason"] if quarantined else None), image

    def set_verified(self, digest: str, signature: str) -> None:
        if self.exists(digest):
            self.redis.hset(keys.cache_item(digest), "verified", signature)

    # Deletion -----------------------------------------------------------------------------------
    def delete_unless_referenced(self, digest: str) -> DeleteOutcome:
        """Remove the item from the index in one atomic step, unless a run, asset or L2 needs it."""
        meta = self.require(digest)
        item_keys = [
            keys.cache_item(digest), keys.cache_index(), keys.cache_refs(digest),
            keys.cache_published(), keys.stats(),
        ]
        if meta.owner:
            item_keys.append(keys.cache_owner_index(meta.owner))
        status, *blockers = self._delete(keys=item_keys, args=[digest])
        if int(status) < 0:
            raise NotFound(f"no cached item {digest}")
        if int(status) == 1:
            self.redis.zrem(keys.cache_shared(), digest)
        return DeleteOutcome(deleted=int(status) == 1, blockers=tuple(sorted(blockers)))

    # References and publication -------------------------------------------------------------
    def add_ref(self, digest: str, ref: str) -> None:
        """Mark the item as needed by `ref` (such as `run:<id>`); NotFound if already gone."""
        if not self._add_ref(keys=[keys.cache_item(digest), keys.cache_refs(digest)], args=[ref]):
            raise NotFound(f"no cached item {digest}")

    def remove_ref(self, digest: str, ref: str) -> None:
        self.redis.srem(keys.cache_refs(digest), ref)

    def refs(self, digest: str) -> set[str]:
        return set(cast(set[str], self.redis.smembers(keys.cache_refs(digest))))  # a decoding client

    def mark_published(self, digest: str) -> None:
        self.require(digest)
        self.redis.sadd(keys.cache_published(), digest)

    def is_published(self, digest: str) -> bool:
        return bool(self.redis.sismember(keys.cache_published(), digest))

    # Named assets ------------------------------------------------------------------------------
    def set_asset(self, name: str, digest: str) -> None:
        """Point a name at an item; the asset holds a reference so the item can't be deleted."""
        if not ASSET_NAME.fullmatch(name):
            raise BadRequest(f"invalid asset name {name[:80]!r}")
        ref = ASSET_REF + name

        def transaction(pipe: redis.client.Pipeline) -> None:
            old = cast(str | None, pipe.hget(keys.assets(), name))  # a decoding client, WATCHing
            if not pipe.exists(keys.cache_item(digest)):
                raise NotFound(f"no cached item {digest}")
            pipe.multi()
            if old and old != digest:
                pipe.srem(keys.cache_refs(old), ref)
            pipe.hset(keys.assets(), name, digest)
            pipe.sadd(keys.cache_refs(digest), ref)

        self.redis.transaction(transaction, keys.assets(), keys.cache_item(digest))

    def asset(self, name: str) -> str | None:
        return cast(str | None, self.redis.hget(keys.assets(), name))  # a decoding client

    def assets(self) -> dict[str, str]:
        return dict(sorted(cast(dict[str, str], self.redis.hgetall(keys.assets())).items()))  # a decoding client

    # Quarantine --------------------------------------------------------------------------------
    def quarantine(self, digest: str, reason: str) -> None:
        """Drop the item from the index and listings, recording why and who could see it (so the
        ownership rule can still tell them from everyone else, `l1web.access.told_quarantined`)."""
        meta = self.get(digest)
        previous = json.loads(cast(str, self.redis.hget(keys.cache_quarantine(), digest)) or "{}")
        if meta is not None:
            seen = self._who_may_see(digest, meta.owner)
        else:  # quarantined already, or a file the index forgot: keep whatever was recorded
            seen = {k: previous[k] for k in _SEEN if k in previous}
        size = meta.size if meta else previous.get("size")
        holders = cast(list[str], seen.get("holders", []))
        item_keys = [keys.cache_item(digest), keys.cache_index(), keys.cache_quarantine(), keys.stats(),
                     *(keys.cache_owner_index(name) for name in holders)]
        record = json.dumps({"reason": reason, "at": time.time(), "size": size, **seen})
        self._quarantine(keys=item_keys, args=[digest, record])

    def _who_may_see(self, digest: str, owner: str | None) -> dict[str, object]:
        """The facts the ownership rule reads, with every holder by name (`access_item` only asks
        about one asker).

        No index maps an item to its holders, so this SCANs the owner indexes: quarantine is rare
        (bytes that stopped matching their name), and a reverse index would cost every upload."""
        prefix = keys.cache_owner_index("")
        indexes = list(self.redis.scan_iter(match=keys.cache_owner_indexes(), count=1000))
        with self.redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zscore(index, digest)
            pipe.hvals(keys.assets())
            pipe.sismember(keys.cache_published(), digest)
            pipe.zscore(keys.cache_shared(), digest)
            *held, assets, published, shared = pipe.execute()
        holders = {index.removeprefix(prefix) for index, score in zip(indexes, held, strict=True) if score is not None}
        if owner:
            holders.add(owner)
        return {"owner": owner, "holders": sorted(holders), "asset": digest in assets,
                "published": bool(published), "shared": shared is not None}

    def quarantine_reason(self, digest: str) -> str | None:
        raw = self.redis.hget(keys.cache_quarantine(), digest)
        return json.loads(raw)["reason"] if raw else None

    def quarantined(self) -> dict[str, dict[str, Any]]:
        raw = cast(dict[str, str], self.redis.hgetall(keys.cache_quarantine()))  # a decoding client
        return {d: json.loads(v) for d, v in raw.items()}

    # Counters ------------------------------------------------------------------------------------
    def incr(self, counter: str, by: int = 1, *, pipe: redis.client.Pipeline | None = None) -> None:
        """Add to a cache counter (with `pipe`: queued there, for its caller to send)."""
        (pipe if pipe is not None else self.redis).hincrby(keys.stats(), counter, by)

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in cast(dict[str, str], self.redis.hgetall(keys.stats())).items()}

    def access_items(self, digests: builtins.list[str], asker: str) -> builtins.list[Item]:  # `list` is a method here
        """The ownership rule's facts for many hashes (`access_item` for each) in one Redis call;
        a quarantined item's come from its quarantine record.

        One script rather than a pipeline of a command per hash: with 1,000 hashes, redis-py spent
        ~35 ms packing 1,005 commands and parsing their 4,000 replies (Redis itself under 1 ms).
        The script answers one flag character per hash and the owners of those that exist."""
        if not digests:
            return []
        script_keys, args = _access_call(digests, asker)
        return items_from_access(self._access(keys=script_keys, args=args), digests, asker)

    def queue_access_items(self, pipe: redis.client.Pipeline, digests: builtins.list[str], asker: str) -> None:
        """Queue `access_items`' script on `pipe` by its SHA (one reply, for `access_items_from`), so a
        caller sends it with other reads in one round trip (`state/submissions.py`); a redis-py
        `Script` in a pipeline would ask `SCRIPT EXISTS` first, a round trip more."""
        script_keys, args = _access_call(digests, asker)
        pipe.evalsha(self._access.sha, len(script_keys), *script_keys, *args)

    def access_items_from(self, answer: Any, digests: builtins.list[str], asker: str) -> builtins.list[Item]:
        """The items of `queue_access_items`' reply; after a Redis restart (NOSCRIPT) asked again."""
        if isinstance(answer, redis.exceptions.NoScriptError):
            return self.access_items(digests, asker)
        if isinstance(answer, Exception):
            raise answer
        return items_from_access(answer, digests, asker)
