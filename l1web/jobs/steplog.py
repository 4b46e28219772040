"""One log line per step job, as `key=value` pairs grep and log shippers read:
`step run=<id> job=<job id> step=<step id> type=EFFECT outcome=completed seconds=1.234`;
and the run and job ids stamped on every other line a job logs (`JobLogAdapter`).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import redis

from l1web.engine.plan import Step
from l1web.state import StateManager

#: Logger of the per-step lines written by workers.
STEPS = logging.getLogger("l1web.steps")


def step_finished(state: StateManager, run_id: str, job_id: str, step: Step, *, outcome: str, seconds: float,
                  worker: str = "", pipe: redis.client.Pipeline | None = None) -> None:
    """A step job ended: log its line and count it for /metrics and on its worker's counters
    (a Redis hiccup here only loses the count, never the step's result). With `pipe`, the counts
    are queued there, for the caller to send with its own writes."""
    node_type = str(step.get("type") or "-")
    STEPS.info("step run=%s job=%s step=%s type=%s outcome=%s seconds=%.3f",
               run_id, job_id, step.get("step_id", "-"), node_type, outcome, seconds)
    try:
        state.step_metrics.record_step(node_type, outcome, seconds, worker=worker, pipe=pipe)
    except redis.RedisError as exc:
        STEPS.warning("step run=%s job=%s: could not record its timing: %s", run_id, job_id, type(exc).__name__)


class JobLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Stamps the run and job ids on every line a job logs."""

    def process(self, msg: object, kwargs: MutableMapping[str, Any]) -> tuple[str, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[run {str(extra.get('run', '-'))[:12]} job {extra.get('job', '-')}] {msg}", kwargs
