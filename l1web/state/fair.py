"""Fair share in front of RQ: which waiting piece of work a free worker takes next.

RQ serves each queue first-in first-out, so one user's 500 queued runs would make everyone
else wait behind them. L1 therefore does not put the work itself on an RQ queue. It files each
piece of work (plan a run, render a step) here, under its priority and its owner, and puts an
interchangeable *token* job on the RQ queue. A worker that takes a token asks `take` for the
work to do, chosen in one Lua call:

- the highest priority that has waiting work;
- among the users with work at that priority, the one served longest ago (round robin; a user
  never served comes first), skipping users at `cap` running pieces when a cap is set;
- that user's oldest waiting piece (first in, first out within one user).

Tokens and waiting pieces are one for one, so every piece is taken once. `take` records the
piece under the token's RQ job id (`taken`) in the same Lua call, so a token whose process dies
right after taking still says what it held (its failure callback reads it back); `done` drops the
record. A token lost on RQ's side (a worker SIGKILLed between popping it from the queue and
starting it, a job deleted) leaves a piece waiting with nobody coming for it: workers sweep for
that (`jobs/queues.py: reissue_lost_tokens`) and put tokens back. A spare token is harmless: it
finds nothing waiting and ends, so the sweep may err on the side of one too many, and a piece is
still popped exactly once.

A token that finished its piece while its kind's tokens still wait on RQ's queue (every worker
busy) takes the next piece itself, in the place of one of those tokens, which it deletes in the
same Lua call (`done_and_next`): one RQ job then serves a run of pieces, and RQ's per-job
bookkeeping — as much again as a trivial run's own work — is paid once for them. Tokens and
waiting pieces stay one for one; a free worker is never robbed (it would have popped that token
already); the piece is still chosen by fair share. RQ still does
everything else (workers, heartbeats, timeouts, failure callbacks, the dashboard); we wrote
only the ordering, because RQ has no notion of per-user fairness and its round-robin worker
needs every queue known when the worker starts.

Keys (`state/keys.py:fair`, `fair_running`): `{kind}:prios` (zset of priorities with waiting work), `{kind}:p{n}:users`
(zset user → last served sequence), `{kind}:p{n}:u:{user}` (list of JSON pieces), `{kind}:served`
(hash user → last served sequence), `{kind}:seq` (counter), `running` (hash user → pieces taken
and not yet finished, for the cap) and `taken` (hash RQ job id of a token → [user, piece]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import redis

from l1web.state import keys, lua

# Every key comes from `keys.py`: those the caller knows as KEYS, the rest (per priority and user,
# found while the script runs) as templates with holes (`state/lua.py`).
# KEYS: waiting list, users zset, prios zset, served hash. ARGV: priority, user, piece (JSON).
_PUT = """
redis.call('RPUSH', KEYS[1], ARGV[3])
local served = redis.call('HGET', KEYS[4], ARGV[2]) or '0'
redis.call('ZADD', KEYS[2], 'NX', served, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
return 1
"""

# The take, shared by `_TAKE` and `_NEXT`: prios zset, served hash, seq counter, running hash,
# taken hash; users template, waiting template, priority hole, user hole, cap (0: none), holder
# (the token's job id, or ''). Returns {user, piece} or nil.
_TAKE_FUNCTION = lua.FILL + """
local function take(prios, served, seq, running, taken, users_t, waiting_t, prio_hole, user_hole, cap, holder)
  for _, prio in ipairs(redis.call('ZREVRANGE', prios, 0, -1)) do
    local users = fill(users_t, prio_hole, prio)
    local waiting = fill(waiting_t, prio_hole, prio)
    for _, user in ipairs(redis.call('ZRANGE', users, 0, -1)) do
      if cap == 0 or tonumber(redis.call('HGET', running, user) or '0') < cap then
        local list = fill(waiting, user_hole, user)
        local piece = redis.call('LPOP', list)
        if piece then
          local n = redis.call('INCR', seq)
          redis.call('HSET', served, user, n)
          if redis.call('LLEN', list) == 0 then
            redis.call('ZREM', users, user)
            if redis.call('ZCARD', users) == 0 then redis.call('ZREM', prios, prio) end
          else
            redis.call('ZADD', users, n, user)
          end
          redis.call('HINCRBY', running, user, 1)
          if holder ~= '' then redis.call('HSET', taken, holder, cjson.encode({user, piece})) end
          return {user, piece}
        end
      end
    end
  end
  return nil
end
"""

# KEYS: prios zset, served hash, seq counter, running hash, taken hash. ARGV: as `take`'s after them.
_TAKE = _TAKE_FUNCTION + """
return take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6])
"""

# A finished piece reported: running hash, taken hash, user, holder (or ''). Never below zero (a
# finish reported twice, or after a restart); with a holder, only its first report counts (0 then).
_DONE_FUNCTION = """
local function done(running, taken, user, holder)
  if holder ~= '' and redis.call('HDEL', taken, holder) == 0 then return 0 end
  local n = tonumber(redis.call('HGET', running, user) or '0')
  if n <= 1 then redis.call('HDEL', running, user) else redis.call('HSET', running, user, n - 1) end
  return 1
end
"""

# KEYS: running hash, taken hash. ARGV: user, holder (or '').
_DONE = _DONE_FUNCTION + "return done(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"

# The token that just finished a piece takes the next one in its place, while every worker is busy
# (see `FairShare.done_and_next`). KEYS: as `_TAKE`'s, then the RQ queue its kind's tokens go on,
# the set of drained workers, this token's stop flag, a queue the worker serves first. ARGV: as
# `_TAKE`'s, then the finished piece's user, the token ids' prefix, RQ's job key template and its
# hole, this worker's name, '1' when that first queue is to be looked at.
_NEXT = _TAKE_FUNCTION + _DONE_FUNCTION + """
if done(KEYS[4], KEYS[5], ARGV[7], ARGV[6]) == 0 then return nil end
if redis.call('EXISTS', KEYS[8]) == 1 then return nil end
if ARGV[11] ~= '' and redis.call('SISMEMBER', KEYS[7], ARGV[11]) == 1 then return nil end
if ARGV[12] == '1' and redis.call('LLEN', KEYS[9]) > 0 then return nil end
local ids, spare = redis.call('LRANGE', KEYS[6], -32, -1), nil
for i = #ids, 1, -1 do
  if string.sub(ids[i], 1, #ARGV[8]) == ARGV[8] then spare = ids[i]; break end
end
if not spare then return nil end
local got = take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]),
                 ARGV[6])
if got then
  redis.call('LREM', KEYS[6], -1, spare)
  redis.call('DEL', fill(ARGV[9], ARGV[10], spare))
end
return got
"""

# KEYS: old waiting list, new waiting list, old users zset, new users zset, prios zset, served hash.
# ARGV: user, old priority, new priority, run id. Moves that run's waiting pieces.
_MOVE = """
local moved = 0
for _, piece in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if cjson.decode(piece)['run'] == ARGV[4] then
    redis.call('LREM', KEYS[1], 1, piece)
    redis.call('RPUSH', KEYS[2], piece)
    moved = moved + 1
  end
end
if moved > 0 then
  if redis.call('LLEN', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[3], ARGV[1])
    if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('ZREM', KEYS[5], ARGV[2]) end
  end
  local served = redis.call('HGET', KEYS[6], ARGV[1]) or '0'
  redis.call('ZADD', KEYS[4], 'NX', served, ARGV[1])
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[3])
end
return moved
"""


def plan_piece(run_id: str, attempt: int, *, render_inline: bool = False) -> dict[str, Any]:
    """The piece of work that plans a run's `attempt` (with `render_inline`, its job also renders the
    run's one step): what `jobs/queues.py` files, and what a new run's submission files with its
    record (`state/submissions.py`)."""
    return {"kind": "plan", "run": run_id, "id": f"plan-{run_id[:16]}-{attempt}", "inline": render_inline}


#: Stand-ins for the priority and the user in the key templates `_TAKE` fills in.
_PRIO, _USER = lua.hole("priority"), lua.hole("user")


class FairShare:
    """Waiting work by priority and user; see the module docstring."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._put = client.register_script(_PUT)
        self._take = client.register_script(_TAKE)
        self._done = client.register_script(_DONE)
        self._move = client.register_script(_MOVE)
        self._next = client.register_script(_NEXT)

    def file(self, run_id: str, piece: Mapping[str, Any]) -> None:
        """File a piece of a run's work under the run's owner and priority."""
        owner, priority = (_text(v) if v is not None else None
                           for v in self.redis.hmget(keys.run(run_id), ["owner", "priority"]))
        try:
            level = int(priority or 0)
        except ValueError:
            level = 0
        self.put(piece["kind"], level, owner or "", piece)

    def put(self, kind: str, priority: int, user: str, piece: Mapping[str, Any]) -> None:
        level = int(priority)
        self._put(keys=[keys.fair_waiting(kind, level, user), keys.fair_users(kind, level), keys.fair_prios(kind),
                        keys.fair_served(kind)],
                  args=[level, user, json.dumps(dict(piece), sort_keys=True)])

    def take(self, kind: str, cap: int = 0, holder: str = "") -> tuple[str, dict[str, Any]] | None:
        """(user, piece) to do next, counted as running for `user` and recorded as taken by
        `holder` (a token's job id) when given; None when nothing may start."""
        got = self._take(keys=[keys.fair_prios(kind), keys.fair_served(kind), keys.fair_seq(kind), keys.fair_running(),
                               keys.fair_taken()],
                         args=[keys.fair_users(kind, _PRIO), keys.fair_waiting(kind, _PRIO, _USER), _PRIO, _USER,
                               int(cap), holder])
        return _pair(got)

    def taken(self, holder: str) -> tuple[str, dict[str, Any]] | None:
        """(user, piece) that `holder` took and has not reported done, or None."""
        raw = self.redis.hget(keys.fair_taken(), holder)
        if not raw:
            return None
        user, piece = json.loads(raw)
        return user, json.loads(piece)

    def holding(self, holders: list[str]) -> list[bool]:
        """For each holder (a token's job id), whether it took a piece it has not reported done."""
        if not holders:
            return []
        return [bool(n) for n in self.redis.hmget(keys.fair_taken(), holders)]

    def done(self, user: str, holder: str = "") -> bool:
        """A piece `take` gave out finished (or failed): `user` runs one fewer. With `holder`,
        only the first report of its piece counts (False for a repeated one)."""
        return bool(self._done(keys=[keys.fair_running(), keys.fair_taken()], args=[user, holder]))

    def done_and_next(self, kind: str, user: str, holder: str, *, cap: int, token_queue: str, token_prefix: str,
                      job_key: str, job_hole: str, worker: str,
                      first_queue: str = "") -> tuple[str, dict[str, Any]] | None:
        """`done(user, holder)`, then the next piece for the same token while every worker is busy.

        A token that goes back to RQ after each piece pays RQ's bookkeeping per piece (dequeue,
        hand-off, heartbeat, result: as much again as a trivial run's own work, measured in
        docs/performance.md). So when the piece is done and a token of this kind still waits on
        `token_queue` (nobody is free to take it), this token takes the next piece in its place and
        that queued token is deleted (`job_key`, RQ's job key template with `job_hole` for the id),
        in one Lua call: tokens and waiting pieces stay one for one, the piece is chosen as `take`
        chooses (fair share holds), and a free worker is never robbed (its token would have left the
        queue). None — the token ends — when no token waits, nothing may start, `worker` is
        drained, a stop was requested for this token (`request_stop`), jobs wait on `first_queue`
        (a queue the worker serves before this token's: steps of runs already started go before
        new plans), or the finish was already reported by another path.
        """
        got = self._next(keys=[keys.fair_prios(kind), keys.fair_served(kind), keys.fair_seq(kind), keys.fair_running(),
                               keys.fair_taken(), token_queue, keys.workers_drained(), keys.fair_stop(holder),
                               first_queue or token_queue],
                         args=[keys.fair_users(kind, _PRIO), keys.fair_waiting(kind, _PRIO, _USER), _PRIO, _USER,
                               int(cap), holder, user, token_prefix, job_key, job_hole, worker,
                               "1" if first_queue else ""])
        return _pair(got)

    def request_stop(self, holder: str, piece_id: str, seconds: float) -> None:
        """Say that the token `holder` must stop `piece_id`: it takes no further piece (`done_and_next`)
        for `seconds`, so the stop cannot reach a piece it took after this one."""
        self.redis.set(keys.fair_stop(holder), piece_id, px=max(1, int(seconds * 1000)))

    def claim_sweep(self, seconds: float) -> bool:
        """True for one caller per `seconds` (over every worker): whose turn it is to sweep for lost tokens."""
        return bool(self.redis.set(keys.fair_sweep(), "1", nx=True, px=max(1, int(seconds * 1000))))

    def move(self, kind: str, user: str, old: int, new: int, run_id: str) -> int:
        """Move a run's waiting pieces to another priority; how many moved."""
        old, new = int(old), int(new)
        return int(self._move(keys=[keys.fair_waiting(kind, old, user), keys.fair_waiting(kind, new, user),
                                    keys.fair_users(kind, old), keys.fair_users(kind, new), keys.fair_prios(kind),
                                    keys.fair_served(kind)],
                              args=[user, old, new, run_id]))

    def waiting(self, kind: str) -> int:
        """Pieces of `kind` waiting, over every priority and user."""
        total = 0
        for prio in cast(list[str], self.redis.zrange(keys.fair_prios(kind), 0, -1)):  # a decoding client
            for user in cast(list[str], self.redis.zrange(keys.fair_users(kind, _text(prio)), 0, -1)):
                total += self.redis.llen(keys.fair_waiting(kind, _text(prio), _text(user)))
        return total

    def running(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.redis.hgetall(keys.fair_running()).items()}


def _pair(got: Any) -> tuple[str, dict[str, Any]] | None:
    """A script's {user, piece} as (user, piece), or None."""
    if not got:
        return None
    user, piece = (_text(value) for value in got)
    return user, json.loads(piece)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
