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
still popped exactly once. RQ still does
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

import redis

from l1web.state import keys

# Keys are built from ARGV[1] (`keys.fair(kind)`), as in runs.py's scripts.
# ARGV: fair prefix, priority, user, piece (JSON)
_PUT = """
local p = ARGV[1]
local level = p .. 'p' .. ARGV[2] .. ':'
redis.call('RPUSH', level .. 'u:' .. ARGV[3], ARGV[4])
local served = redis.call('HGET', p .. 'served', ARGV[3]) or '0'
redis.call('ZADD', level .. 'users', 'NX', served, ARGV[3])
redis.call('ZADD', p .. 'prios', ARGV[2], ARGV[2])
return 1
"""

# ARGV: fair prefix, running hash, cap (0: none), taken hash, holder (the token's job id, or '').
# Returns {user, piece} or nil.
_TAKE = """
local p = ARGV[1]
local running = ARGV[2]
local cap = tonumber(ARGV[3])
for _, prio in ipairs(redis.call('ZREVRANGE', p .. 'prios', 0, -1)) do
  local level = p .. 'p' .. prio .. ':'
  for _, user in ipairs(redis.call('ZRANGE', level .. 'users', 0, -1)) do
    if cap == 0 or tonumber(redis.call('HGET', running, user) or '0') < cap then
      local piece = redis.call('LPOP', level .. 'u:' .. user)
      if piece then
        local seq = redis.call('INCR', p .. 'seq')
        redis.call('HSET', p .. 'served', user, seq)
        if redis.call('LLEN', level .. 'u:' .. user) == 0 then
          redis.call('ZREM', level .. 'users', user)
          if redis.call('ZCARD', level .. 'users') == 0 then redis.call('ZREM', p .. 'prios', prio) end
        else
          redis.call('ZADD', level .. 'users', seq, user)
        end
        redis.call('HINCRBY', running, user, 1)
        if ARGV[5] ~= '' then redis.call('HSET', ARGV[4], ARGV[5], cjson.encode({user, piece})) end
        return {user, piece}
      end
    end
  end
end
return nil
"""

# ARGV: running hash, user, taken hash, holder (or ''). Never below zero (a finish reported twice,
# or after a restart); with a holder, only its first report counts.
_DONE = """
local key = ARGV[1]
if ARGV[4] ~= '' and redis.call('HDEL', ARGV[3], ARGV[4]) == 0 then return 0 end
local n = tonumber(redis.call('HGET', key, ARGV[2]) or '0')
if n <= 1 then redis.call('HDEL', key, ARGV[2]) else redis.call('HSET', key, ARGV[2], n - 1) end
return 1
"""

# ARGV: fair prefix, (unused), user, old priority, new priority, run id. Moves that run's waiting pieces.
_MOVE = """
local p = ARGV[1]
local old = p .. 'p' .. ARGV[4] .. ':'
local new = p .. 'p' .. ARGV[5] .. ':'
local moved = 0
for _, piece in ipairs(redis.call('LRANGE', old .. 'u:' .. ARGV[3], 0, -1)) do
  if cjson.decode(piece)['run'] == ARGV[6] then
    redis.call('LREM', old .. 'u:' .. ARGV[3], 1, piece)
    redis.call('RPUSH', new .. 'u:' .. ARGV[3], piece)
    moved = moved + 1
  end
end
if moved > 0 then
  if redis.call('LLEN', old .. 'u:' .. ARGV[3]) == 0 then
    redis.call('ZREM', old .. 'users', ARGV[3])
    if redis.call('ZCARD', old .. 'users') == 0 then redis.call('ZREM', p .. 'prios', ARGV[4]) end
  end
  local served = redis.call('HGET', p .. 'served', ARGV[3]) or '0'
  redis.call('ZADD', new .. 'users', 'NX', served, ARGV[3])
  redis.call('ZADD', p .. 'prios', ARGV[5], ARGV[5])
end
return moved
"""


class FairShare:
    """Waiting work by priority and user; see the module docstring."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._put = client.register_script(_PUT)
        self._take = client.register_script(_TAKE)
        self._done = client.register_script(_DONE)
        self._move = client.register_script(_MOVE)

    def file(self, run_id: str, piece: Mapping) -> None:
        """File a piece of a run's work under the run's owner and priority."""
        owner, priority = (_text(v) if v is not None else None
                           for v in self.redis.hmget(keys.run(run_id), ["owner", "priority"]))
        try:
            level = int(priority or 0)
        except ValueError:
            level = 0
        self.put(piece["kind"], level, owner or "", piece)

    def put(self, kind: str, priority: int, user: str, piece: Mapping) -> None:
        self._put(args=[keys.fair(kind), int(priority), user, json.dumps(dict(piece), sort_keys=True)])

    def take(self, kind: str, cap: int = 0, holder: str = "") -> tuple[str, dict] | None:
        """(user, piece) to do next, counted as running for `user` and recorded as taken by
        `holder` (a token's job id) when given; None when nothing may start."""
        got = self._take(args=[keys.fair(kind), keys.fair_running(), int(cap), keys.fair_taken(), holder])
        if not got:
            return None
        user, piece = (value.decode() if isinstance(value, bytes) else value for value in got)
        return user, json.loads(piece)

    def taken(self, holder: str) -> tuple[str, dict] | None:
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
        return bool(self._done(args=[keys.fair_running(), user, keys.fair_taken(), holder]))

    def claim_sweep(self, seconds: float) -> bool:
        """True for one caller per `seconds` (over every worker): whose turn it is to sweep for lost tokens."""
        return bool(self.redis.set(keys.fair_sweep(), "1", nx=True, px=max(1, int(seconds * 1000))))

    def move(self, kind: str, user: str, old: int, new: int, run_id: str) -> int:
        """Move a run's waiting pieces to another priority; how many moved."""
        return int(self._move(args=[keys.fair(kind), "", user, int(old), int(new), run_id]))

    def waiting(self, kind: str) -> int:
        """Pieces of `kind` waiting, over every priority and user."""
        prefix, total = keys.fair(kind), 0
        for prio in self.redis.zrange(prefix + "prios", 0, -1):
            for user in self.redis.zrange(f"{prefix}p{_text(prio)}:users", 0, -1):
                total += self.redis.llen(f"{prefix}p{_text(prio)}:u:{_text(user)}")
        return total

    def running(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.redis.hgetall(keys.fair_running()).items()}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
