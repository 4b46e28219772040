"""Runs and their steps in Redis: records, status indexes and compare-and-set transitions.

A run is a hash (`artdag:run:{id}`); listings come from sorted-set indexes (all, by status,
by user, by user and status) kept in step with the record by Lua scripts, so `GET /runs` never
scans keys. Each step has a static description written once (`...:steps`) and a small JSON
state (`...:status`) changed only by compare-and-set, so two workers racing to advance a run
enqueue each step once and finish the run once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import redis

from l1web import lifecycle
from l1web.lifecycle import RunEvent, StepEvent
from l1web.state import hashes, keys, lua
from l1web.state.notify import decode_deliveries
from l1web.state.watch import decode_progress
from l1web.status import DONE

#: Run fields a listing leaves out: the large ones, which only the run's own page and API
#: answer carry, so a page of 50 stays small and quick to decode.
HEAVY_FIELDS = ("recipe", "provenance", "plan")
#: Run fields stored as JSON text in the run hash.
JSON_FIELDS = frozenset({"inputs", "params", "recipe", "input_hashes", "provenance", "plan"})

# KEYS: run, all, status index, user index, user+status index; ARGV: created, status, fields...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
redis.call('ZADD', KEYS[4], ARGV[1], KEYS[1])
redis.call('ZADD', KEYS[5], ARGV[1], KEYS[1])
return 1
"""

# KEYS: run; ARGV: new status, expected (comma list or ''), the by-status index key and the
# by-user-and-status index key as built by `keys.py` with holes for the status and owner the script
# reads from the run (`_STATUS_HOLE`, `_OWNER_HOLE`), the run's change channel, field/value pairs...
_SET_STATUS_BODY = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 0 end
if ARGV[2] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[2], '[^,]+') do if s == current then ok = true end end
  if not ok then return 0 end
end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local created = redis.call('HGET', KEYS[1], 'created')
local by_status, by_user = ARGV[3], fill(ARGV[4], ARGV[6], owner)
redis.call('ZREM', fill(by_status, ARGV[5], current), KEYS[1])
redis.call('ZREM', fill(by_user, ARGV[5], current), KEYS[1])
redis.call('ZADD', fill(by_status, ARGV[5], ARGV[1]), created, KEYS[1])
redis.call('ZADD', fill(by_user, ARGV[5], ARGV[1]), created, KEYS[1])
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if #ARGV >= FIELDS then redis.call('HSET', KEYS[1], unpack(ARGV, FIELDS)) end
redis.call('PUBLISH', ARGV[7], ARGV[1])
"""
_SET_STATUS = lua.FILL + "local FIELDS = 8\n" + _SET_STATUS_BODY + "return 1\n"
# `_SET_STATUS` answering the run as it now is (flat field/value list), or 0: a worker starting a
# run reads it anyway (one round trip, was two).
_SET_STATUS_READ = lua.FILL + "local FIELDS = 8\n" + _SET_STATUS_BODY + "return redis.call('HGETALL', KEYS[1])\n"

# A run completes with its output: `_SET_STATUS` after the output's reference and grant, which
# `CacheIndex.add_ref` and `grant` made in three round trips of their own (issue 19). KEYS: run,
# the output's cache item, its refs, the owner's item index (or the item again when no owner);
# ARGV: as `_SET_STATUS` up to the channel, then the ref, the digest, the time, then field/value
# pairs. The ref and grant are made even if the run's status no longer allows completing (as
# before); -1 (nothing written) if the item is gone. KEYS[5], the owner's notification settings:
# their default URL comes back with the answer ({answer, url}), read for the run's end (was one
# more round trip).
#
# With ARGV[11], an output step's id (`Runs.queue_complete_if_settled`), it completes only a run
# that is settled as its last step's end leaves it, or else writes nothing and answers 0: the
# run's status allows completing, every step in KEYS[6] (its step statuses) is one of ARGV[12]
# (the done statuses), and the output step's output is the digest.
_COMPLETE = lua.FILL + """
local FIELDS = 13
local url = redis.call('HGET', KEYS[5], 'url') or ''
if ARGV[11] ~= '' then
  local current, ok = redis.call('HGET', KEYS[1], 'status'), false
  for s in string.gmatch(ARGV[2], '[^,]+') do if s == current then ok = true end end
  if not ok then return {0, url} end
  local done = {}
  for s in string.gmatch(ARGV[12], '[^,]+') do done[s] = true end
  local states = redis.call('HVALS', KEYS[6])
  if #states == 0 then return {0, url} end
  for _, raw in ipairs(states) do
    if not done[cjson.decode(raw)['status']] then return {0, url} end
  end
  local out = redis.call('HGET', KEYS[6], ARGV[11])
  if not out or cjson.decode(out)['output'] ~= ARGV[9] then return {0, url} end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, url} end
redis.call('SADD', KEYS[3], ARGV[8])
if KEYS[4] ~= KEYS[2] then redis.call('ZADD', KEYS[4], 'NX', ARGV[10], ARGV[9]) end
local function body()
""" + _SET_STATUS_BODY + """
return 1
end
return {body(), url}
"""
# KEYS: run, its steps, their statuses, its deliveries; ARGV: a step's progress key as built by
# `keys.py` with a hole for the step id, the hole. Returns the run, steps and statuses (flat
# field/value lists), the deliveries, and step id / progress pairs (every step's, empty if none).
_VIEW = lua.FILL + """
local steps = redis.call('HGETALL', KEYS[2])
local progress = {}
for i = 1, #steps, 2 do
  progress[#progress + 1] = steps[i]
  progress[#progress + 1] = redis.call('HGETALL', fill(ARGV[1], ARGV[2], steps[i]))
end
return {redis.call('HGETALL', KEYS[1]), steps, redis.call('HGETALL', KEYS[3]),
        redis.call('LRANGE', KEYS[4], 0, -1), progress}
"""
#: Stand-in for the step id in the progress key template `_VIEW` fills in.
_STEP_HOLE = lua.hole("step")


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A script's flat field/value list as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


#: Stand-ins for the status and owner in the index key templates `_SET_STATUS` fills in.
_STATUS_HOLE, _OWNER_HOLE = lua.hole("status"), lua.hole("owner")

# KEYS: index; ARGV: first, last (ranks, newest first), fields to leave out...
# One call for a whole page (rather than a command per run): the records come back as one JSON text.
_PAGE = """
local total = redis.call('ZCARD', KEYS[1])
local members = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])
local skip = {}
for i = 3, #ARGV do skip[ARGV[i]] = true end
local out = {}
for _, key in ipairs(members) do
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local record = {}
    for i = 1, #flat, 2 do
      if not skip[flat[i]] then record[flat[i]] = flat[i + 1] end
    end
    out[#out + 1] = record
  end
end
if #out == 0 then return {total, '[]'} end
return {total, cjson.encode(out)}
"""

# KEYS: step status hash; ARGV: step id, expected statuses (comma list or ''), JSON patch,
# an attempt record (JSON) to append to the step's `attempts` list, or ''
_STEP_UPDATE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local state = cjson.decode(raw)
if ARGV[2] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[2], '[^,]+') do if s == state['status'] then ok = true end end
  if not ok then return 0 end
end
for k, v in pairs(cjson.decode(ARGV[3])) do state[k] = v end
if ARGV[4] and ARGV[4] ~= '' then
  local attempts = state['attempts'] or {}
  attempts[#attempts + 1] = cjson.decode(ARGV[4])
  state['attempts'] = attempts
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
return 1
"""

# KEYS: step status hash; ARGV: step id, then JSON [[expected statuses (comma list or ''), patch], ...]:
# the stages one after the other, each a compare-and-set on the status the one before left; stops
# at the first that does not apply, writes the state once. Returns how many applied.
_STEP_STAGES = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local state = cjson.decode(raw)
local applied = 0
for _, stage in ipairs(cjson.decode(ARGV[2])) do
  if stage[1] ~= '' then
    local ok = false
    for s in string.gmatch(stage[1], '[^,]+') do if s == state['status'] then ok = true end end
    if not ok then break end
  end
  for k, v in pairs(stage[2]) do state[k] = v end
  applied = applied + 1
end
if applied > 0 then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state)) end
return applied
"""


def _encode(fields: Mapping[str, object]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        if value is None:
            value = ""
        elif name in JSON_FIELDS:
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        flat += [name, str(value)]
    return flat


def _decode(raw: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, object] = {}
    for name, value in raw.items():
        out[name] = json.loads(value) if name in JSON_FIELDS and value else value
    return out


#: The run hash's encoding, for `state/submissions.py` (which writes a new run in one Lua call).
encode_fields, decode_fields = _encode, _decode


def _watch_keys(run_id: str, step_ids: Iterable[str]) -> list[str]:
    """The progress and log keys of a run's steps (`state/watch.py`)."""
    return [k for sid in step_ids
            for k in (keys.step_progress(run_id, sid), keys.step_log(run_id, sid), keys.step_preview(run_id, sid))]


#: (run, steps, step states, whole queue paused): what `advance` and a starting step decide from.
DecisionView = tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, dict[str, Any]], bool]

#: Statuses of runs that may still need content (`l1web/status.py:LIVE_RUN`).
LIVE_STATUSES = ("pending", "running", "paused")


class Runs:
    """Typed access to run records, their indexes and their steps."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._create = client.register_script(_CREATE)
        self._set_status = client.register_script(_SET_STATUS)
        self._complete = client.register_script(_COMPLETE)
        self._set_status_read = client.register_script(_SET_STATUS_READ)
        self._step_update = client.register_script(_STEP_UPDATE)
        self._step_stages = client.register_script(_STEP_STAGES)
        self._page = client.register_script(_PAGE)
        self._view = client.register_script(_VIEW)
        self._idle_pubsubs: list[redis.client.PubSub] = []
        self._pubsub_lock = threading.Lock()

    # Records -----------------------------------------------------------------------------
    def create(self, run: Mapping[str, Any]) -> bool:
        """Store a new run and index it; False (and nothing written) if the id exists."""
        run_id, owner, status = str(run["id"]), str(run.get("owner") or ""), str(run["status"])
        index_keys = [
            keys.run(run_id), keys.runs_index(), keys.runs_by_status(status),
            keys.runs_by_user(owner), keys.runs_by_user_status(owner, status),
        ]
        return bool(self._create(keys=index_keys, args=[run["created"], status, *_encode(run)]))

    def mark_published(self, run_id: str, **fields: str) -> bool:
        """Set `published` and `fields` on a completed run and add its output to the published
        set, in one transaction; False (nothing written) unless the run exists and completed."""
        run_key = keys.run(run_id)

        def transaction(pipe: redis.client.Pipeline) -> bool:
            status, output = pipe.hmget(run_key, "status", "output_hash")
            if status != "completed" or not output:
                return False
            pipe.multi()
            pipe.hset(run_key, mapping=hashes.fields({"published": "1", **fields}))
            pipe.sadd(keys.cache_published(), output)
            return True

        # redis-py types the callable as returning None; with value_from_callable its result is returned
        return bool(self.redis.transaction(transaction, run_key, value_from_callable=True))  # type: ignore[arg-type]

    def get(self, run_id: str) -> dict[str, Any] | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.run(run_id)))  # a decoding client
        return _decode(raw) if raw else None

    def many(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The runs of `run_ids` that exist, without their `HEAVY_FIELDS`, in one round trip."""
        ids = list(dict.fromkeys(run_ids))
        with self.redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hgetall(keys.run(run_id))
            found = cast(list[dict[str, str]], pipe.execute())  # a decoding client
        return {run_id: _decode({k: v for k, v in raw.items() if k not in HEAVY_FIELDS})
                for run_id, raw in zip(ids, found, strict=True) if raw}

    def update(self, run_id: str, **fields: object) -> None:
        if fields:
            self.redis.hset(keys.run(run_id),
                            mapping=hashes.fields(dict(zip(*[iter(_encode(fields))] * 2, strict=True))))

    def set_status(self, run_id: str, status: str, *, expected: Iterable[str] = (), **fields: object) -> bool:
        """Move a run to `status` (and its indexes with it) if its status is one of `expected`."""
        return bool(self._set_status(keys=[keys.run(run_id)], args=self._status_args(run_id, status, expected, fields)))

    @staticmethod
    def _status_args(run_id: str, status: str, expected: Iterable[str], fields: Mapping[str, object]) -> list[str]:
        templates = [keys.runs_by_status(_STATUS_HOLE), keys.runs_by_user_status(_OWNER_HOLE, _STATUS_HOLE)]
        return [status, ",".join(expected), *templates, _STATUS_HOLE, _OWNER_HOLE, keys.run_changes(run_id),
                *_encode(fields)]

    def transition_read(self, run_id: str, event: RunEvent, **fields: object) -> dict[str, Any] | None:
        """`transition`, answering the run as it is after it (None when the event did not apply)."""
        args = self._status_args(run_id, lifecycle.target(event), lifecycle.sources(event), fields)
        found = self._set_status_read(keys=[keys.run(run_id)], args=args)
        return _decode(_pairs(found)) if isinstance(found, list) and found else None

    def complete(self, run_id: str, *, output: str, ref: str, owner: str,
                 **fields: object) -> tuple[bool | None, str]:
        """`transition(run_id, RunEvent.COMPLETE, **fields)` after `CacheIndex.add_ref(output, ref)`
        and, with an `owner`, `CacheIndex.grant(output, owner)`, in one round trip: whether the run
        completed, or None (nothing written) when the output is no longer in the cache; and the
        owner's default notification URL (`Notifications.user`), "" when none."""
        answer, url = self._complete(keys=self._complete_keys(run_id, output, owner),
                                     args=self._complete_args(run_id, output, ref, fields))
        done = int(answer)
        return (None if done < 0 else bool(done)), url

    def queue_complete_if_settled(self, pipe: redis.client.Pipeline, run_id: str, *, output_step: str, output: str,
                                  ref: str, owner: str, **fields: object) -> None:
        """Queue `complete` on a pipeline that ends a step, for a run that this end leaves settled
        with its output: in the same round trip as the step's end (issue 19), checked there, so
        the run completes only if its status allows it, every step is done and `output_step`'s
        output is `output`; else nothing is written. `complete_answer` reads its answer."""
        args = self._complete_args(run_id, output, ref, fields, output_step=output_step)
        run_keys = self._complete_keys(run_id, output, owner, step_statuses=keys.run_step_status(run_id))
        pipe.evalsha(self._complete.sha, len(run_keys), *run_keys, *args)

    @staticmethod
    def complete_answer(answer: Any) -> tuple[bool, str]:
        """(completed, the owner's default notification URL) from a queued `complete`'s answer; an
        error (a script flushed by a Redis restart) is not completed."""
        if isinstance(answer, Exception):
            return False, ""
        done, url = answer
        return int(done) > 0, url

    @staticmethod
    def _complete_keys(run_id: str, output: str, owner: str, step_statuses: str = "") -> list[str]:
        item = keys.cache_item(output)
        return [keys.run(run_id), item, keys.cache_refs(output), keys.cache_owner_index(owner) if owner else item,
                keys.notify_user(owner), step_statuses or keys.run(run_id)]

    @staticmethod
    def _complete_args(run_id: str, output: str, ref: str, fields: Mapping[str, object],
                       output_step: str = "") -> list[str | float]:
        event = RunEvent.COMPLETE
        templates = [keys.runs_by_status(_STATUS_HOLE), keys.runs_by_user_status(_OWNER_HOLE, _STATUS_HOLE)]
        return [lifecycle.target(event), ",".join(lifecycle.sources(event)), *templates, _STATUS_HOLE, _OWNER_HOLE,
                keys.run_changes(run_id), ref, output, time.time(), output_step, ",".join(sorted(DONE)),
                *_encode(fields)]

    def wait_for_change(self, run_id: str, statuses: Iterable[str], timeout: float) -> None:
        """Return once the run's status is not one of `statuses`, or after `timeout` seconds.

        A blocking wait on the run's change channel (every status change publishes to it), not a
        poll: the status is read again after subscribing, so a change just before is not missed.
        The subscription and that read go on two connections, and Redis does not promise to take
        them in the order they were sent; a change that slipped between them is caught by reading
        the status again every `RECHECK` seconds of waiting (a round trip a second per waiting
        request), not at the wait's end (up to 30 s late).
        """
        waiting_on = set(statuses)
        deadline = time.monotonic() + timeout
        channel = keys.run_changes(run_id)
        pubsub = self._take_pubsub()
        try:
            pubsub.subscribe(channel)
            if self.redis.hget(keys.run(run_id), "status") not in waiting_on:
                return
            recheck = time.monotonic() + self.RECHECK
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=min(left, max(0.0, recheck - time.monotonic())))
                # A kept subscriber may still hear its last wait's run (`_keep_pubsub`): not this one.
                if message is not None and message["channel"] == channel and message["data"] not in waiting_on:
                    return
                if time.monotonic() >= recheck:
                    if self.redis.hget(keys.run(run_id), "status") not in waiting_on:
                        return
                    recheck = time.monotonic() + self.RECHECK
        finally:
            self._keep_pubsub(pubsub)

    #: Seconds between a waiting request's reads of the run's status (besides the change channel).
    RECHECK = 1.0

    #: Idle subscribers a process keeps for `wait_for_change` (the web app lets 4 requests wait at once).
    KEPT_PUBSUBS = 4

    def _take_pubsub(self) -> redis.client.PubSub:
        with self._pubsub_lock:
            if self._idle_pubsubs:
                return self._idle_pubsubs.pop()
        return cast(redis.client.PubSub, self.redis.pubsub(  # type: ignore[no-untyped-call]  # redis-py: unannotated
            ignore_subscribe_messages=True))

    def _keep_pubsub(self, pubsub: redis.client.PubSub) -> None:
        """Unsubscribe `pubsub` and keep it (and its connection) for the next wait, or close it.

        redis-py's `PubSub.close` disconnects, so every `?wait=` used to leave a dropped connection
        in the pool, and the next request on it paid a new connection (TCP, HELLO, CLIENT
        SETINFO, SELECT: 5-6 round trips; issue 19). The unsubscribe is sent, not waited for: its
        confirmation, and any message of this run still on its way, are read by the next wait on
        this subscriber, which listens to its own channel only; waiting for them here held the
        answer of every `?wait=` and `Prefer: wait` for a round trip after the run had ended.
        """
        kept = False
        try:
            if pubsub.connection is not None:
                pubsub.unsubscribe()
                with self._pubsub_lock:
                    if len(self._idle_pubsubs) < self.KEPT_PUBSUBS:
                        self._idle_pubsubs.append(pubsub)
                        kept = True
        except redis.RedisError:  # the wait itself is over; this connection is not worth keeping
            pass
        finally:
            if not kept:
                pubsub.close()

    def transition(self, run_id: str, event: RunEvent, **fields: object) -> bool:
        """Apply a life-cycle event (`l1web/lifecycle.py`) if the run's status allows it, atomically."""
        return self.set_status(run_id, lifecycle.target(event), expected=lifecycle.sources(event), **fields)

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run is None:
            return
        owner, status, key = str(run.get("owner") or ""), str(run["status"]), keys.run(run_id)
        watched = _watch_keys(run_id, cast(list[str], self.redis.hkeys(keys.run_steps(run_id))))  # a decoding client
        with self.redis.pipeline() as pipe:
            pipe.zrem(keys.runs_index(), key)
            pipe.zrem(keys.runs_by_status(status), key)
            pipe.zrem(keys.runs_by_user(owner), key)
            pipe.zrem(keys.runs_by_user_status(owner, status), key)
            pipe.delete(key, keys.run_steps(run_id), keys.run_step_status(run_id), *watched)
            pipe.execute()

    def page(self, *, status: str | None = None, user: str | None = None,
             offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """Newest first, from the narrowest index; returns (runs, total matching).

        Each run comes without its `HEAVY_FIELDS`, all of them in one Redis call.
        """
        if status and user is not None:
            index = keys.runs_by_user_status(user, status)
        elif status:
            index = keys.runs_by_status(status)
        elif user is not None:
            index = keys.runs_by_user(user)
        else:
            index = keys.runs_index()
        total, records = self._page(keys=[index], args=[offset, offset + limit - 1, *HEAVY_FIELDS])
        return [_decode(raw) for raw in json.loads(records)], int(total)

    def live_run_needs(self, digest: str) -> bool:
        """True when a pending or running run has `digest` as an input, a SOURCE or a step output:
        what a remote worker may fetch. Scans only live runs, which are few."""
        prefix = keys.run("")
        for status in LIVE_STATUSES:
            for key in cast(list[str], self.redis.zrange(keys.runs_by_status(status), 0, -1)):  # a decoding client
                run_id = key[len(prefix):]
                if digest in json.loads(self.redis.hget(key, "input_hashes") or "{}").values():
                    return True
                if any(step.get("cache_id") == digest for step in self.steps(run_id)):
                    return True
                if any(state.get("output") == digest for state in self.step_states(run_id).values()):
                    return True
        return False

    def count_by_status(self, statuses: Iterable[str]) -> dict[str, int]:
        with self.redis.pipeline() as pipe:
            names = list(statuses)
            for name in names:
                pipe.zcard(keys.runs_by_status(name))
            return dict(zip(names, pipe.execute(), strict=True))

    def ids_with_status(self, status: str) -> list[str]:
        """Ids of every run with `status` (for the few live statuses: running, paused)."""
        prefix = keys.run("")
        return [key[len(prefix):] for key in cast(list[str], self.redis.zrange(keys.runs_by_status(status), 0, -1))]

    # The whole queue ---------------------------------------------------------------------
    def queue_paused(self) -> bool:
        return self.redis.get(keys.queue_paused()) == "1"

    def set_queue_paused(self, paused: bool) -> None:
        if paused:
            self.redis.set(keys.queue_paused(), "1")
        else:
            self.redis.delete(keys.queue_paused())

    # Steps -------------------------------------------------------------------------------
    def init_steps(self, run_id: str, steps: list[dict[str, Any]], initial: Mapping[str, dict[str, Any]],
                   run_fields: Mapping[str, object] | None = None, *, first_plan: bool = False) -> DecisionView:
        """Write each step's static description and initial state (replacing any old ones, and
        the progress and logs of an earlier attempt), and `run_fields` into the run, at once;
        answer the run's `decision_view` as it is right after (read in the same transaction, so the
        plan's advance needs no read of its own).

        `first_plan`: the run was never planned, so it has no earlier steps whose progress and
        logs need deleting (one round trip fewer; old steps' descriptions go either way)."""
        old = [] if first_plan else cast(list[str], self.redis.hkeys(keys.run_steps(run_id)))  # a decoding client
        watched = _watch_keys(run_id, {*old, *(s["step_id"] for s in steps)})
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.run_steps(run_id), keys.run_step_status(run_id), *watched)
            if steps:
                pipe.hset(keys.run_steps(run_id), mapping={s["step_id"]: json.dumps(s) for s in steps})
                pipe.hset(keys.run_step_status(run_id),
                          mapping={sid: json.dumps(state) for sid, state in initial.items()})
            if run_fields:
                pipe.hset(keys.run(run_id), mapping=dict(zip(*[iter(_encode(run_fields))] * 2, strict=True)))
            self.queue_decision_view(pipe, run_id)
            return self.decision_view_from(pipe.execute()[-4:])

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        """Static step descriptions, in plan order (by level, then id)."""
        raw = self.redis.hgetall(keys.run_steps(run_id))
        steps = [json.loads(value) for value in raw.values()]
        return sorted(steps, key=lambda s: (s.get("level", 0), s.get("order", 0), s["step_id"]))

    def snapshot(self, run_id: str, *, with_run: bool = True
                 ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """(run, steps, step states) read in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            if with_run:
                pipe.hgetall(keys.run(run_id))
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_step_status(run_id))
            *head, raw_steps, raw_states = pipe.execute()
        return self._snapshot(head[0] if head else None, raw_steps, raw_states)

    def decision_view(self, run_id: str) -> DecisionView:
        """(run, steps, step states, whole queue paused) in one round trip: what `advance` and a
        starting step decide from."""
        with self.redis.pipeline(transaction=False) as pipe:
            self.queue_decision_view(pipe, run_id)
            return self.decision_view_from(pipe.execute())

    @staticmethod
    def queue_decision_view(pipe: redis.client.Pipeline, run_id: str) -> None:
        """Queue `decision_view`'s reads on a pipeline that also writes (read after its writes);
        `decision_view_from` makes the view of their 4 answers."""
        pipe.hgetall(keys.run(run_id))
        pipe.hgetall(keys.run_steps(run_id))
        pipe.hgetall(keys.run_step_status(run_id))
        pipe.get(keys.queue_paused())

    @classmethod
    def decision_view_from(cls, answers: Sequence[Any]) -> DecisionView:
        raw_run, raw_steps, raw_states, paused = answers
        return (*cls._snapshot(raw_run, raw_steps, raw_states), paused == "1")

    def view(self, run_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, dict[str, Any]],
                                         list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """(run, steps, step states, notification deliveries, each step's live progress) in one
        round trip (`_VIEW`): what the run's page, its status fragment and `GET /runs/{id}` show,
        polled while the run is live (a pipeline could not name the progress keys before it has
        read the step ids)."""
        args = [keys.step_progress(run_id, _STEP_HOLE), _STEP_HOLE]
        found = self._view(keys=[keys.run(run_id), keys.run_steps(run_id), keys.run_step_status(run_id),
                                 keys.run_deliveries(run_id)], args=args)
        raw_run, raw_steps, raw_states, raw_deliveries, raw_progress = found  # a decoding client: text
        live = {sid: decode_progress(_pairs(raw)) for sid, raw in _pairs(raw_progress).items() if raw}
        return (*self._snapshot(_pairs(raw_run), _pairs(raw_steps), _pairs(raw_states)),
                decode_deliveries(raw_deliveries), live)

    @staticmethod
    def _snapshot(raw_run: Mapping[str, str] | None, raw_steps: Mapping[str, str],
                  raw_states: Mapping[str, str]
                  ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        steps = sorted((json.loads(value) for value in raw_steps.values()),
                       key=lambda s: (s.get("level", 0), s.get("order", 0), s["step_id"]))
        states = {sid: json.loads(value) for sid, value in raw_states.items()}
        return (_decode(raw_run) if raw_run else None), steps, states

    def step_states(self, run_id: str) -> dict[str, dict[str, Any]]:
        raw = cast(dict[str, str], self.redis.hgetall(keys.run_step_status(run_id)))  # a decoding client
        return {sid: json.loads(value) for sid, value in raw.items()}

    def step_transition(self, run_id: str, step_id: str, event: StepEvent, *, attempt: Mapping[str, Any] | None = None,
                        **patch: object) -> bool:
        """Apply a life-cycle event to a step if its status allows it (compare-and-set), appending
        `attempt` (worker, start, end, outcome, reason) to its attempts in the same step."""
        return self.update_step(run_id, step_id, expected=lifecycle.sources(event), attempt=attempt,
                                status=lifecycle.target(event), **patch)

    def step_transitions(self, run_id: str, step_id: str,
                         stages: Iterable[tuple[StepEvent, Mapping[str, object]]]) -> int:
        """Apply life-cycle events to a step one after the other in one round trip, each a
        compare-and-set on the status the one before left (as separate `step_transition` calls
        would, without another writer in between); how many applied (it stops at the first that
        does not)."""
        encoded = [[",".join(lifecycle.sources(event)), {**patch, "status": str(lifecycle.target(event))}]
                   for event, patch in stages]
        return int(self._step_stages(keys=[keys.run_step_status(run_id)], args=[step_id, json.dumps(encoded)]))

    def step_transition_with(self, run_id: str, step_id: str, event: StepEvent, *,
                             also: Callable[[redis.client.Pipeline], None],
                             attempt: Mapping[str, Any] | None = None, **patch: object) -> bool:
        """`step_transition`, with writes that go along with it (`also` queues them on the
        pipeline it is given: counters) sent in the same round trip, after the transition."""
        return self.step_transition_along(run_id, step_id, event, before=None, after=also, attempt=attempt, **patch)[0]

    def step_transition_along(self, run_id: str, step_id: str, event: StepEvent, *,
                              before: Callable[[redis.client.Pipeline], None] | None = None,
                              after: Callable[[redis.client.Pipeline], None] | None = None,
                              attempt: Mapping[str, Any] | None = None, **patch: object
                              ) -> tuple[bool, list[Any], list[Any], bool]:
        """`step_transition` in one round trip with the commands `before` and `after` queue on the
        pipeline they are given, sent before and after it: (applied, before's answers, after's,
        resent). `resent`: the transition was sent again alone (below), after `after`'s commands,
        so reads among them did not see it.

        The transition goes by its script's SHA (a redis-py `Script` in a pipeline asks `SCRIPT
        EXISTS` first: a round trip more); only after a Redis restart (NOSCRIPT) is the script
        loaded and the transition sent again, alone. An error of the commands along with it is
        theirs (an exception among their answers, never raised): it never fails the transition."""
        args = [step_id, ",".join(lifecycle.sources(event)),
                json.dumps({**patch, "status": str(lifecycle.target(event))}), json.dumps(attempt) if attempt else ""]
        key = keys.run_step_status(run_id)
        with self.redis.pipeline(transaction=False) as pipe:
            if before is not None:
                before(pipe)
            ahead = len(pipe.command_stack)
            pipe.evalsha(self._step_update.sha, 1, key, *args)
            if after is not None:
                after(pipe)
            answers = pipe.execute(raise_on_error=False)
        first, resent = answers[ahead], False
        if isinstance(first, redis.exceptions.NoScriptError):
            first, resent = self._step_update(keys=[key], args=args), True
        elif isinstance(first, Exception):
            raise first
        return bool(first), answers[:ahead], answers[ahead + 1:], resent

    def update_step(self, run_id: str, step_id: str, *, expected: Iterable[str] = (),
                    attempt: Mapping[str, Any] | None = None, **patch: object) -> bool:
        """Merge `patch` into a step's state if its status is one of `expected` (any if empty)."""
        args = [step_id, ",".join(expected), json.dumps(patch), json.dumps(attempt) if attempt else ""]
        return bool(self._step_update(keys=[keys.run_step_status(run_id)], args=args))
