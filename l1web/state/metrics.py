"""Step-duration counters the workers write and `/metrics` reads: one hash, `artdag:metrics:steps`.

Fields are `<node type>|le:<bucket>`, `<node type>|sum` and `<node type>|outcome:<outcome>`;
which bucket a duration falls in is `l1web.metrics`'s business.
"""

from __future__ import annotations

import redis

from l1web.state import keys
from l1web.state.workers import DONE, FAILED


class StepMetrics:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def record(self, node: str, bucket: str, outcome: str, seconds: float, *, worker: str = "",
               ok: bool = True) -> None:
        """Count one finished step job: its outcome, its duration in `bucket` and, when `worker`
        names the worker that ran it, one step done (`ok`) or failed on that worker's counters."""
        with self.redis.pipeline(transaction=False) as pipe:
            if worker:
                pipe.hincrby(keys.worker_stats(worker), DONE if ok else FAILED, 1)
            pipe.hincrby(keys.step_metrics(), f"{node}|le:{bucket}", 1)
            pipe.hincrbyfloat(keys.step_metrics(), f"{node}|sum", seconds)
            pipe.hincrby(keys.step_metrics(), f"{node}|outcome:{outcome}", 1)
            pipe.execute()

    def fields(self) -> dict[str, str]:
        """Every counter as text, field → value."""
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.step_metrics()).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
