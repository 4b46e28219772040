"""A new run in one round trip: its inputs held, its record and indexes written, its plan filed.

`POST /runs` used to do this in five round trips (one `add_ref` per input, the run's `create`, the
fair-share pool's read of the owner and priority it had just been given, the pool's `put`), each
~0.3–1 ms on a loaded machine and a window in which another request could act between them. One
Lua call does it all or nothing (issue 19): the token that tells a worker to take the plan goes
on RQ's queue afterwards (`jobs/queues.py`), and only when the run was created.

The script writes what `runs.py`'s `_CREATE`, `cache.py`'s `_ADD_REF` and `fair.py`'s `_PUT`
write, with the same keys from `keys.py`; `tests/test_runs_api.py` checks that a run submitted
this way is listed, holds its inputs and is taken by `FairShare.take`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis

from l1web.access import Item
from l1web.state import keys
from l1web.state.cache import CacheIndex
from l1web.state.runs import decode_fields, encode_fields

# KEYS: 1 run, 2 all runs, 3 by status, 4 by user, 5 by user and status, 6 the config's runs,
# 7 fair waiting list, 8 fair users zset, 9 fair prios zset, 10 fair served hash, then each input's
# item and refs keys. ARGV: 1 created, 2 the inputs' ref (`run:<id>`), 3 run id, 4 '1' to add the
# run to the config's runs, 5 '1' to file the plan, 6 priority, 7 owner, 8 the piece (JSON),
# 9 n, the number of the run's fields, 10..9+n the run's fields, then commands to run once all
# that is written (each its length, then its name and arguments: the plan's RQ token, issue 19).
# Returns 1 (created), 0 (the run exists: nothing written) or -i (input i is not stored: nothing
# written).
_SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local inputs = (#KEYS - 10) / 2
for i = 1, inputs do
  if redis.call('EXISTS', KEYS[9 + 2 * i]) == 0 then return -i end
end
for i = 1, inputs do redis.call('SADD', KEYS[10 + 2 * i], ARGV[2]) end
local n = tonumber(ARGV[9])
redis.call('HSET', KEYS[1], unpack(ARGV, 10, 9 + n))
for i = 2, 5 do redis.call('ZADD', KEYS[i], ARGV[1], KEYS[1]) end
if ARGV[4] == '1' then redis.call('SADD', KEYS[6], ARGV[3]) end
if ARGV[5] == '1' then
  redis.call('RPUSH', KEYS[7], ARGV[8])
  local served = redis.call('HGET', KEYS[10], ARGV[7]) or '0'
  redis.call('ZADD', KEYS[8], 'NX', served, ARGV[7])
  redis.call('ZADD', KEYS[9], ARGV[6], ARGV[6])
end
local at = 10 + n
while at <= #ARGV do
  local length = tonumber(ARGV[at])
  redis.call(unpack(ARGV, at + 1, at + length))
  at = at + length + 1
end
return 1
"""


class Submissions:
    """Writing a new run with everything its submission entails, in one round trip."""

    def __init__(self, client: redis.Redis, cache: CacheIndex) -> None:
        self.redis = client
        self.cache = cache
        self._submit = client.register_script(_SUBMIT)

    def create(self, run: Mapping[str, Any], inputs: Iterable[str], *, config_id: str = "",
               piece: Mapping[str, Any] | None = None, then: Iterable[Sequence[Any]] = ()) -> int | str:
        """Hold every input for the run, write the run and its indexes, add it to its config's
        runs and file `piece` (its plan) under its owner and priority, then run the commands
        `then` (the plan's RQ token, in the same round trip): all or nothing.

        Returns 1 when created, 0 when a run with this id exists (nothing written), or the digest
        of an input that is no longer stored (nothing written).
        """
        run_id, owner, status = str(run["id"]), str(run.get("owner") or ""), str(run["status"])
        priority = int(run.get("priority") or 0)
        digests = list(inputs)
        kind = str(piece["kind"]) if piece is not None else "plan"
        script_keys = [
            keys.run(run_id), keys.runs_index(), keys.runs_by_status(status), keys.runs_by_user(owner),
            keys.runs_by_user_status(owner, status), keys.config_refs(config_id or "-"),
            keys.fair_waiting(kind, priority, owner), keys.fair_users(kind, priority), keys.fair_prios(kind),
            keys.fair_served(kind),
        ]
        for digest in digests:
            script_keys += [keys.cache_item(digest), keys.cache_refs(digest)]
        fields = encode_fields(run)
        args = [run["created"], f"run:{run_id}", run_id, "1" if config_id else "0", "1" if piece else "0",
                priority, owner, json.dumps(dict(piece), sort_keys=True) if piece else "", len(fields), *fields]
        for command in then:
            args += [len(command), *command]
        outcome = int(cast(int, self._submit(keys=script_keys, args=args)))
        return digests[-outcome - 1] if outcome < 0 else outcome

    def existing(self, run_id: str, legacy_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The runs stored under `run_id` and under `legacy_id` (None where absent), in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.run(run_id))
            pipe.hgetall(keys.run(legacy_id))
            found = cast(list[dict[str, str]], pipe.execute())  # a decoding client
        first, legacy = (decode_fields(raw) if raw else None for raw in found)
        return first, legacy

    def prefetch(self, owner: str, recipe_name: str, digests: list[str], run_id: str,
                 legacy_id: str) -> tuple[str | None, list[Item], dict[str, Any] | None, dict[str, Any] | None]:
        """What a submission of a recipe by name on inputs by hash reads, in one round trip:
        (the owner's recipe of that name, or None; each input's ownership facts, as
        `CacheIndex.access_items`; the run under `run_id`; the run under `legacy_id`). The facts come
        from `access_items`' script, one reply, where a command per fact took ten for one input."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.config_names(owner), recipe_name)
            if digests:
                self.cache.queue_access_items(pipe, digests, owner)
            pipe.hgetall(keys.run(run_id))
            pipe.hgetall(keys.run(legacy_id))
            replies = pipe.execute(raise_on_error=False)
        config_id, run, legacy = replies[0], replies[-2], replies[-1]
        for reply in (config_id, run, legacy):
            if isinstance(reply, Exception):
                raise reply
        items = self.cache.access_items_from(replies[1], digests, owner) if digests else []
        return (cast(str | None, config_id), items, decode_fields(run) if run else None,
                decode_fields(legacy) if legacy else None)

    @staticmethod
    def stored(run: Mapping[str, Any]) -> dict[str, Any]:
        """`run` as `Runs.get` reads it back once `create` wrote it (text fields, JSON decoded)."""
        flat = encode_fields(run)
        return decode_fields(dict(zip(flat[::2], flat[1::2], strict=True)))
