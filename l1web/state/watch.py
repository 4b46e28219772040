"""What a rendering step reports while it runs: its progress hash and its log, both with TTLs.

Workers publish both in one pipelined round trip at most a few times a second
(`engine.watch.StepWatch`); pages and the API read the progress of a run's steps in one
round trip too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

import redis

from l1web.state import keys

#: Bytes of a step's log kept (the last ones; older lines are dropped whole).
STEP_LOG_CAP = 256 * 1024
#: Progress fields that are whole numbers; the others are decimals, `state` is text.
INT_FIELDS = frozenset({"frames", "total_frames"})
TEXT_FIELDS = frozenset({"state"})

# KEYS: log; ARGV: text, cap, ttl. Append, then keep only the last `cap` bytes from a line start
# (so the kept text never starts inside a line, nor inside a UTF-8 character).
_APPEND_LOG = """
local n = redis.call('APPEND', KEYS[1], ARGV[1])
local cap = tonumber(ARGV[2])
if n > cap then
  local tail = redis.call('GETRANGE', KEYS[1], n - cap, -1)
  local cut = string.find(tail, '\\n', 1, true)
  if cut then tail = string.sub(tail, cut + 1) end
  redis.call('SET', KEYS[1], tail)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
"""


def decode_progress(raw: Mapping[str, str]) -> dict[str, object]:
    """A progress hash as stored → numbers (`Runs.view` reads them too)."""
    out: dict[str, object] = {}
    for name, value in raw.items():
        if value == "":
            out[name] = None
        elif name in TEXT_FIELDS:
            out[name] = value
        else:
            try:
                out[name] = int(float(value)) if name in INT_FIELDS else float(value)
            except ValueError:
                out[name] = value
    return out


class StepWatches:
    """Progress hashes and logs of steps (`keys.step_progress`, `keys.step_log`)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._append = client.register_script(_APPEND_LOG)
        self._raw: redis.Redis | None = None

    def publish(self, run_id: str, step_id: str, progress: Mapping[str, object] | None, log_text: str = "") -> None:
        """Write a progress snapshot and/or append to the log: one round trip.

        The log script goes by its SHA (`EVALSHA`) rather than as a redis-py `Script` in the
        pipeline, which asks `SCRIPT EXISTS` first: a second round trip on every publish. Only
        after a Redis restart (NOSCRIPT, so the log was not appended) is it loaded and the
        pipeline sent again (the progress write, which is idempotent, twice).
        """
        for retry in (False, True):
            with self.redis.pipeline(transaction=False) as pipe:
                self.queue_publish(pipe, run_id, step_id, progress, log_text)
                try:
                    pipe.execute()
                    return
                except redis.exceptions.NoScriptError:
                    if retry:
                        raise
                    self.redis.script_load(self._append.script)

    def queue_publish(self, pipe: redis.client.Pipeline, run_id: str, step_id: str,
                      progress: Mapping[str, object] | None, log_text: str = "") -> int:
        """`publish`'s commands queued on a pipeline that carries other writes; how many. Its
        caller sends them, and publishes again (`publish`) when one answered NOSCRIPT."""
        queued = len(pipe.command_stack)
        if progress:
            key = keys.step_progress(run_id, step_id)
            pipe.hset(key, mapping={k: "" if v is None else str(v) for k, v in progress.items()})
            pipe.expire(key, keys.STEP_PROGRESS_TTL)
        if log_text:
            pipe.evalsha(self._append.sha, 1, keys.step_log(run_id, step_id), log_text, STEP_LOG_CAP,
                         keys.STEP_LOG_TTL)
        return len(pipe.command_stack) - queued

    def progress(self, run_id: str, step_ids: Iterable[str]) -> dict[str, dict[str, object]]:
        """The progress of each of `step_ids` that has one (one round trip)."""
        ids = list(step_ids)
        if not ids:
            return {}
        with self.redis.pipeline(transaction=False) as pipe:
            for step_id in ids:
                pipe.hgetall(keys.step_progress(run_id, step_id))
            found = pipe.execute()
        return {sid: decode_progress(raw) for sid, raw in zip(ids, found, strict=True) if raw}

    def publish_preview(self, run_id: str, step_id: str, jpeg: bytes, at: float) -> None:
        """The step's "last rendered" frame (the web app reads it back as bytes) and, in the same
        transaction, its time as the progress field `preview_at` (what pages link it by)."""
        progress = keys.step_progress(run_id, step_id)
        with self.raw().pipeline(transaction=True) as pipe:
            pipe.set(keys.step_preview(run_id, step_id), jpeg, ex=keys.STEP_PROGRESS_TTL)
            pipe.hset(progress, "preview_at", str(at))
            pipe.expire(progress, keys.STEP_PROGRESS_TTL)
            pipe.execute()

    def preview(self, run_id: str, step_id: str) -> bytes | None:
        return cast(bytes | None, self.raw().get(keys.step_preview(run_id, step_id)))  # the raw client

    def raw(self) -> redis.Redis:
        """A client on the same connection pool that returns bytes (JPEGs are not text)."""
        if self._raw is None:
            kwargs = dict(self.redis.connection_pool.connection_kwargs)
            kwargs["decode_responses"] = False
            self._raw = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=self.redis.connection_pool.connection_class, **kwargs))
        return self._raw

    def log(self, run_id: str, step_id: str) -> str | None:
        return cast(str | None, self.redis.get(keys.step_log(run_id, step_id)))  # a decoding client

    def delete(self, run_id: str, step_ids: Iterable[str]) -> None:
        names = [k for sid in step_ids for k in (keys.step_progress(run_id, sid), keys.step_log(run_id, sid),
                                                 keys.step_preview(run_id, sid))]
        if names:
            self.redis.delete(*names)
