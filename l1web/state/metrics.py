"""Step-duration counters the workers write and `/metrics` reads: one hash, `artdag:metrics:steps`.

Fields are `<node type>|le:<bucket>`, `<node type>|sum` and `<node type>|outcome:<outcome>`;
`record_step` picks the bucket; `l1web.metrics` turns the counters into a Prometheus histogram.
"""

from __future__ import annotations

import math

import redis

from l1web.state import keys
from l1web.state.workers import DONE, FAILED
from l1web.status import StepStatus

#: Upper bounds (seconds) of the step-duration histogram: cache hits take milliseconds,
#: effect renders of long videos take many minutes.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, math.inf)


def bound(value: float) -> str:
    """A bucket's name in the hash and in Prometheus' `le` label."""
    return "+Inf" if math.isinf(value) else repr(value)


class StepMetrics:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def record_step(self, node_type: str, outcome: str, seconds: float, *, worker: str = "",
                    pipe: redis.client.Pipeline | None = None) -> None:
        """Count one finished step job: its outcome and, in the first bucket it fits, its duration;
        and one step done or failed on `worker`'s counters (the workers page). With `pipe`, the
        writes are queued there for its caller to send."""
        bucket = next(b for b in STEP_BUCKETS if seconds <= b)
        self.record(node_type or "UNKNOWN", bound(bucket), outcome, seconds, worker=worker,
                    ok=outcome != StepStatus.FAILED, pipe=pipe)

    def record(self, node: str, bucket: str, outcome: str, seconds: float, *, worker: str = "",
               ok: bool = True, pipe: redis.client.Pipeline | None = None) -> None:
        """Count one finished step job: its outcome, its duration in `bucket` and, when `worker`
        names the worker that ran it, one step done (`ok`) or failed on that worker's counters."""
        if pipe is None:
            with self.redis.pipeline(transaction=False) as own:
                self.record(node, bucket, outcome, seconds, worker=worker, ok=ok, pipe=own)
                own.execute()
            return
        if worker:
            pipe.hincrby(keys.worker_stats(worker), DONE if ok else FAILED, 1)
        pipe.hincrby(keys.step_metrics(), f"{node}|le:{bucket}", 1)
        pipe.hincrbyfloat(keys.step_metrics(), f"{node}|sum", seconds)
        pipe.hincrby(keys.step_metrics(), f"{node}|outcome:{outcome}", 1)

    def fields(self) -> dict[str, str]:
        """Every counter as text, field → value."""
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.step_metrics()).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
