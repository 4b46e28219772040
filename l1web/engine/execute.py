"""Phase 3, execute: run a plan's steps through an executor, reusing every rendered step.

A step whose cache id already has a result in the ResultIndex, with the output still in the
store, is not rendered again. Steps start as soon as their inputs are ready; a failed step
marks every step depending on it skipped with its reason, while independent steps go on.
Every status change is an event of `l1web/lifecycle.py`, the rules the RQ jobs follow too;
this executor has no queue, so a step is enqueued and started at once (reported as running).
Each render gets its own work directory under the caller's temp root, removed on every path.

The executor is anything with `submit(fn, *args) -> Future` (`concurrent.futures` executors
work as is); `SyncExecutor` runs each step at once in the calling thread.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Protocol

from l1web import lifecycle
from l1web.engine.ffmpeg import RENDER_TIMEOUT
from l1web.engine.interfaces import ResultIndex, Store
from l1web.engine.plan import Plan, Step
from l1web.engine.steps import run_step
from l1web.lifecycle import StepEvent
from l1web.status import StepStatus

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]: ...


class SyncExecutor:
    """Runs each submitted call immediately in the caller's thread (tests, one-off renders)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the future carries any failure, like a pool's
            future.set_exception(exc)
        return future


def execute(plan: Plan, store: Store, results: ResultIndex, executor: Executor | None = None,
            *, temp_root: Path, progress: Progress | None = None,
            timeout: float = RENDER_TIMEOUT, owner: str | None = None) -> dict[str, Any]:
    """Run `plan`; a JSON-ready report of the run and of every step."""
    run = _Run(plan, store, results, executor or SyncExecutor(), progress=progress,
               timeout=timeout, owner=owner)
    run_dir = Path(tempfile.mkdtemp(prefix="l1-run-", dir=temp_root))
    try:
        run.go(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return run.report()


class _Run:
    """The mutable state of one execution: step records, the queue and what is running."""

    def __init__(self, plan: Plan, store: Store, results: ResultIndex, executor: Executor, *,
                 progress: Progress | None, timeout: float, owner: str | None):
        self.plan, self.store, self.results, self.executor = plan, store, results, executor
        self.progress, self.timeout, self.owner = progress, timeout, owner
        self.steps = {s["step_id"]: s for s in plan["steps"]}
        self.records = {sid: {"status": StepStatus.PENDING.value, "cache_id": s["cache_id"],
                              "digest": None, "seconds": None, "error": None}
                        for sid, s in self.steps.items()}
        self.running: dict[Future[Any], tuple[Step, Path, float]] = {}

    def go(self, run_dir: Path) -> None:
        for step in self.steps.values():  # SOURCE steps are their files: there or not
            if step["type"] == "SOURCE":
                present = self.store.has(step["cache_id"])
                status = lifecycle.initial(step, present)
                error = None if present else f"source {step['cache_id']} is not in the store"
                self._set(step, status, digest=step["cache_id"] if present else None, error=error)
        pending = [sid for sid in self.steps if self.records[sid]["status"] == StepStatus.PENDING]
        while pending or self.running:
            pending = [sid for sid in pending if not self._try_start(self.steps[sid], run_dir)]
            if self.running:
                done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(future)
            elif pending:  # nothing can start and nothing runs: cannot happen in a valid plan
                for sid in pending:
                    self._apply(self.steps[sid], StepEvent.SKIP, error="inputs never ready")
                pending = []

    def _try_start(self, step: Step, run_dir: Path) -> bool:
        """True once the step is settled or started; False while it must wait."""
        broken = lifecycle.blocked_by(step, self.records)
        if broken is not None:
            reason = self.records[broken]["error"]
            self._apply(step, StepEvent.SKIP, error=f"input {broken!r}: {reason}")
            return True
        if not lifecycle.ready(step, self.records) or self._in_flight(step["cache_id"]):
            return False
        if self._reuse(step):
            return True
        inputs = [self.records[i] for i in step["inputs"]]
        self._apply(step, StepEvent.ENQUEUE, StepEvent.START)
        try:
            paths = [self.store.path_for(r["digest"]) for r in inputs]
        except Exception as exc:  # noqa: BLE001 - an input vanished or failed verification
            self._apply(step, StepEvent.FAIL, error=f"input unreadable: {exc}")
            return True
        work_dir = Path(tempfile.mkdtemp(prefix="step-", dir=run_dir))
        started = time.monotonic()
        future = self.executor.submit(run_step, step, paths, work_dir, timeout=self.timeout)
        self.running[future] = (step, work_dir, started)
        return True

    def _in_flight(self, cache_id: str) -> bool:
        # Two steps of one plan may be the same computation: render it once.
        return any(step["cache_id"] == cache_id for step, _, _ in self.running.values())

    def _reuse(self, step: Step) -> bool:
        digest = self.results.get_result(step["cache_id"])
        if digest is not None and self.store.has(digest):
            self._apply(step, StepEvent.REUSE, digest=digest)
            return True
        return False

    def _finish(self, future: Future[Any]) -> None:
        step, work_dir, started = self.running.pop(future)
        seconds = round(time.monotonic() - started, 3)
        try:
            out = future.result()
            digest = self.store.put_file(Path(out), source=f"step:{step['cache_id']}",
                                         owner=self.owner)
            self.results.set_result(step["cache_id"], digest)
        except Exception as exc:  # noqa: BLE001 - any failure of a step is that step's failure
            log.warning("step %s (%s) failed: %s", step["step_id"], step["type"], exc)
            self._apply(step, StepEvent.FAIL, seconds=seconds, error=f"{step['type']}: {exc}")
        else:
            self._apply(step, StepEvent.SUCCEED, seconds=seconds, digest=digest)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _apply(self, step: Step, *events: StepEvent, **fields: Any) -> None:
        """Apply lifecycle events in turn (IllegalTransition if one does not apply); report once."""
        status = self.records[step["step_id"]]["status"]
        for event in events:
            status = lifecycle.step_after(status, event)
        self._set(step, status, **fields)

    def _set(self, step: Step, status: StepStatus, **fields: Any) -> None:
        record = self.records[step["step_id"]]
        record.update(fields, status=status.value)
        if self.progress is None:
            return
        event = {"step_id": step["step_id"], "node_id": step["node_id"], "type": step["type"],
                 **record}
        try:
            self.progress(event)
        except Exception:  # a broken progress display must not break the render
            log.exception("progress callback failed for step %s", step["step_id"])

    def report(self) -> dict[str, Any]:
        end = lifecycle.outcome(self.plan["output"], self.records, order=list(self.steps))
        output = self.records[self.plan["output"]]
        counts = {status.value: 0 for status in StepStatus}
        for record in self.records.values():
            counts[record["status"]] += 1
        ok = end.event == lifecycle.RunEvent.COMPLETE
        failed = [r for r in self.records.values() if r["status"] == StepStatus.FAILED]
        return {
            "plan_id": self.plan["plan_id"],
            "status": "completed" if ok else "failed",
            "output": output["digest"] if ok else None,
            "error": None if ok else (output["error"] or (failed[0]["error"] if failed else None)),
            "executed": counts[StepStatus.COMPLETED] + counts[StepStatus.FAILED],
            "counts": counts,
            "steps": self.records,
        }
