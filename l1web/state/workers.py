"""What L1 keeps about its RQ workers beyond RQ's own records: which are drained, and how many
steps each has finished or failed. Both are kept by worker name, without expiry, so that a worker
restarted under the same name (`python worker.py --name …`) comes back drained and keeps its counts.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from l1web.state import keys

#: The counters of `keys.worker_stats`.
DONE, FAILED = "steps_done", "steps_failed"


class Workers:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def drain(self, name: str) -> bool:
        """Mark `name` drained (it finishes its current step and takes no more); False if it was."""
        return bool(self.redis.sadd(keys.workers_drained(), name))

    def resume(self, name: str) -> bool:
        """Let `name` take work again; False if it was not drained."""
        return bool(self.redis.srem(keys.workers_drained(), name))

    def is_drained(self, name: str) -> bool:
        return bool(self.redis.sismember(keys.workers_drained(), name))

    def ask_drained(self, pipe: redis.client.Pipeline, name: str) -> None:
        """Queue the question "is `name` drained?" in `pipe` (another caller's send): its reply, 0 or 1."""
        pipe.sismember(keys.workers_drained(), name)

    def drained(self) -> set[str]:
        return {str(n) for n in self.redis.smembers(keys.workers_drained())}

    def count_step(self, name: str, ok: bool, pipe: redis.client.Pipeline | None = None) -> None:
        """Count one step this worker finished (`ok`) or failed; in `pipe` when given."""
        (pipe if pipe is not None else self.redis).hincrby(keys.worker_stats(name), DONE if ok else FAILED, 1)

    def stats(self, names: Iterable[str]) -> dict[str, dict[str, int]]:
        """Each worker's counters (zeros for one that never finished a step), in one round trip."""
        ordered = list(names)
        with self.redis.pipeline(transaction=False) as pipe:
            for name in ordered:
                pipe.hgetall(keys.worker_stats(name))
            found = pipe.execute()
        return {name: {DONE: int(raw.get(DONE, 0)), FAILED: int(raw.get(FAILED, 0))}
                for name, raw in zip(ordered, found, strict=True)}
