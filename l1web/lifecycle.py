"""The life cycle of runs and steps, as pure functions: the one place its rules are written.

Statuses are in `l1web/status.py`. A status changes only by an *event*; each event names the
statuses it may start from and the one it leads to:

    step:  pending ─enqueue→ queued ─start→ running ─succeed→ completed
                                                    ─reuse──→ cached   (also from pending)
                                                    ─fail───→ failed
                                                    ─retry──→ retrying ─start→ running …
                                                    ─cancel─→ cancelled
           pending/queued ─skip→ skipped      queued ─defer→ pending  (its run is paused)
           failed/cancelled/skipped/retrying ─requeue→ pending        (requeue keeps what is done)

    run:   pending ─start→ running ─complete→ completed
                                   ─fail────→ failed
           pending/running/paused ─cancel→ cancelled     pending/running ─pause→ paused
           paused ─resume→ running (planned) or ─release→ pending (not planned yet)
           failed/cancelled ─requeue→ running            ─rerun→ pending (planned again)

Both executors follow these rules: the RQ jobs (`jobs/runs.py`, where every change is a
compare-and-set in Redis from `sources(event)` to `target(event)`, `state/runs.py`) and the
in-process executor (`engine/execute.py`, which applies `step_after` to its records). The
decisions they share — which steps are ready, which are blocked, how a finished run ends,
whether a failed attempt is tried again — are the functions below. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from l1web.status import BROKEN, DONE, FINAL, RunStatus, StepStatus

S, R = StepStatus, RunStatus


class StepEvent(enum.StrEnum):
    ENQUEUE = "enqueue"  # its inputs are done: a job for it goes into a queue
    START = "start"  # a worker begins an attempt
    SUCCEED = "succeed"  # the attempt rendered the output
    REUSE = "reuse"  # the attempt found the output already recorded
    FAIL = "fail"  # the step failed for good
    RETRY = "retry"  # the attempt failed for an infrastructure reason; another is queued
    CANCEL = "cancel"  # its run was cancelled while it ran
    SKIP = "skip"  # it will never run: an input broke, or its run ended
    DEFER = "defer"  # taken from the queue while its run is paused: back to waiting
    REQUEUE = "requeue"  # its run is requeued: wait again (done steps keep their output)


class RunEvent(enum.StrEnum):
    START = "start"  # planning begins
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"  # a paused run that was planned goes on
    RELEASE = "release"  # a run paused before planning (or submitted paused) goes to planning
    REQUEUE = "requeue"  # a failed or cancelled run renders its unfinished steps again
    RERUN = "rerun"  # a failed or cancelled run is planned again from scratch
    FORCE_RERUN = "force_rerun"  # as RERUN, also from completed (`force`)


#: event → (statuses it may start from, status it leads to).
STEP_TRANSITIONS: Mapping[StepEvent, tuple[frozenset[StepStatus], StepStatus]] = {
    StepEvent.ENQUEUE: (frozenset({S.PENDING}), S.QUEUED),
    StepEvent.START: (frozenset({S.QUEUED, S.RETRYING}), S.RUNNING),
    StepEvent.SUCCEED: (frozenset({S.RUNNING}), S.COMPLETED),
    # Found recorded before a job was needed (the in-process executor) or during the attempt.
    StepEvent.REUSE: (frozenset({S.PENDING, S.RUNNING}), S.CACHED),
    # A job can fail before it starts (its worker died between taking and starting it).
    StepEvent.FAIL: (frozenset({S.QUEUED, S.RUNNING, S.RETRYING}), S.FAILED),
    StepEvent.RETRY: (frozenset({S.QUEUED, S.RUNNING}), S.RETRYING),
    StepEvent.CANCEL: (frozenset({S.RUNNING}), S.CANCELLED),
    StepEvent.SKIP: (frozenset({S.PENDING, S.QUEUED, S.RETRYING}), S.SKIPPED),
    StepEvent.DEFER: (frozenset({S.QUEUED, S.RETRYING}), S.PENDING),
    StepEvent.REQUEUE: (frozenset({S.FAILED, S.CANCELLED, S.SKIPPED, S.RETRYING}), S.PENDING),
}

RUN_TRANSITIONS: Mapping[RunEvent, tuple[frozenset[RunStatus], RunStatus]] = {
    RunEvent.START: (frozenset({R.PENDING}), R.RUNNING),
    # A paused run still finishes: its running steps may be the last ones.
    RunEvent.COMPLETE: (frozenset({R.RUNNING, R.PAUSED}), R.COMPLETED),
    RunEvent.FAIL: (frozenset({R.PENDING, R.RUNNING, R.PAUSED}), R.FAILED),
    RunEvent.CANCEL: (frozenset({R.PENDING, R.RUNNING, R.PAUSED}), R.CANCELLED),
    RunEvent.PAUSE: (frozenset({R.PENDING, R.RUNNING}), R.PAUSED),
    RunEvent.RESUME: (frozenset({R.PAUSED}), R.RUNNING),
    RunEvent.RELEASE: (frozenset({R.PAUSED}), R.PENDING),
    RunEvent.REQUEUE: (frozenset({R.FAILED, R.CANCELLED}), R.RUNNING),
    RunEvent.RERUN: (frozenset({R.FAILED, R.CANCELLED}), R.PENDING),
    RunEvent.FORCE_RERUN: (frozenset({R.FAILED, R.CANCELLED, R.COMPLETED}), R.PENDING),
}


class IllegalTransition(ValueError):
    """An event that does not apply to the current status."""

    def __init__(self, current: str, event: str) -> None:
        super().__init__(f"cannot {event} a {current} step or run")
        self.current, self.event = current, event


@overload
def sources(event: StepEvent) -> frozenset[StepStatus]: ...
@overload
def sources(event: RunEvent) -> frozenset[RunStatus]: ...
def sources(event: StepEvent | RunEvent) -> frozenset[StepStatus] | frozenset[RunStatus]:
    """The statuses `event` may start from (what a compare-and-set expects)."""
    return _table(event)[event][0]


@overload
def target(event: StepEvent) -> StepStatus: ...
@overload
def target(event: RunEvent) -> RunStatus: ...
def target(event: StepEvent | RunEvent) -> StepStatus | RunStatus:
    """The status `event` leads to."""
    return _table(event)[event][1]


def allowed(current: str | None, event: StepEvent | RunEvent) -> bool:
    return current in sources(event)


def step_after(current: str, event: StepEvent) -> StepStatus:
    """The step's status after `event`; IllegalTransition when the event does not apply."""
    if not allowed(current, event):
        raise IllegalTransition(current, event)
    return target(event)


def run_after(current: str, event: RunEvent) -> RunStatus:
    """The run's status after `event`; IllegalTransition when the event does not apply."""
    if not allowed(current, event):
        raise IllegalTransition(current, event)
    return target(event)


def _table(event: StepEvent | RunEvent) -> Mapping[Any, tuple[frozenset[Any], StepStatus | RunStatus]]:
    return STEP_TRANSITIONS if isinstance(event, StepEvent) else RUN_TRANSITIONS


# Decisions shared by both executors ---------------------------------------------------------
def initial(step: Mapping[str, Any], source_present: bool) -> StepStatus:
    """A planned step's first status: a SOURCE is its input file, there (cached) or not (failed);
    every other step waits (pending)."""
    if step["type"] != "SOURCE":
        return S.PENDING
    return S.CACHED if source_present else S.FAILED


def ready(step: Mapping[str, Any], states: Mapping[str, Mapping[str, Any]]) -> bool:
    """A pending step may start: every input's output exists."""
    return states[step["step_id"]]["status"] == S.PENDING and all(
        states[dep]["status"] in DONE for dep in step["inputs"])


def blocked_by(step: Mapping[str, Any], states: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first input of a pending step that ended without an output, if any (it must be skipped)."""
    if states[step["step_id"]]["status"] != S.PENDING:
        return None
    return next((dep for dep in step["inputs"] if states[dep]["status"] in BROKEN), None)


def settled(states: Mapping[str, Mapping[str, Any]]) -> bool:
    """Every step is final: the run can end."""
    return all(state["status"] in FINAL for state in states.values())


@dataclass(frozen=True)
class Outcome:
    """How a run whose steps are all final ends."""

    event: RunEvent  # COMPLETE or FAIL
    output: str | None  # the output step's digest when completed
    reason: str  # why it failed ("" when completed)


def outcome(output_step: str, states: Mapping[str, Mapping[str, Any]], order: Sequence[str] = ()) -> Outcome:
    """The end of a settled run: completed when its output step is done, else failed with the
    first failed step's reason (in `order`, plan order, when given)."""
    out = states.get(output_step, {})
    if out.get("status") in DONE:
        return Outcome(RunEvent.COMPLETE, out.get("output"), "")
    ids = list(order) or list(states)
    failed = [sid for sid in ids if states.get(sid, {}).get("status") == S.FAILED]
    if failed:
        error = states[failed[0]].get("error") or "unknown error"
        return Outcome(RunEvent.FAIL, None, f"step {failed[0]!r} failed: {error}")
    return Outcome(RunEvent.FAIL, None, "the output step did not complete")


# Retries ------------------------------------------------------------------------------------
class Cause(enum.StrEnum):
    """Why an attempt failed, as far as retrying is concerned."""

    INFRASTRUCTURE = "infrastructure"  # the machine failed the step: another attempt may succeed
    DETERMINISTIC = "deterministic"  # the step itself fails (bad input, invalid media, effect error)


#: Exception type names that mean the machine, not the step, failed.
INFRASTRUCTURE_ERRORS = frozenset({
    "AbandonedJobError",  # RQ: the worker's heartbeat stopped (worker lost)
    "JobTimeoutException",  # RQ: the job outlived its timeout
    "WorkHorseKilled",  # L1: the process rendering the step was killed (OOM killer, SIGKILL)
    "WorkerShutdown",  # L1: the worker was stopped mid-render (cold shutdown)
    "FFmpegTimeout",  # L1: ffmpeg outlived STEP_TIMEOUT and was killed
    "ConnectionError", "TimeoutError",  # Redis or a peer unreachable for a moment
})
#: errno values (as text in the message) that mean the machine failed: disk full, quota, I/O.
INFRASTRUCTURE_ERRNO = ("no space left on device", "disk quota exceeded", "input/output error")


def classify(error_type: str, message: str = "") -> Cause:
    """Whether a failure is worth another attempt (on another worker, preferably)."""
    if error_type in INFRASTRUCTURE_ERRORS:
        return Cause.INFRASTRUCTURE
    text = message.lower()
    if any(marker in text for marker in INFRASTRUCTURE_ERRNO):
        return Cause.INFRASTRUCTURE
    return Cause.DETERMINISTIC


def retry_event(cause: Cause, attempts: int, max_retries: int) -> StepEvent:
    """RETRY while an infrastructure failure has attempts left (1 + `max_retries` in all), else FAIL."""
    if cause == Cause.INFRASTRUCTURE and attempts <= max_retries:
        return StepEvent.RETRY
    return StepEvent.FAIL


def blocklisted(attempts: Iterable[Mapping[str, Any]], limit: int) -> frozenset[str]:
    """Workers that failed `limit` or more different steps of one run (`limit` 0: none).

    `attempts`: every attempt of the run's steps, each with its `step` id, `worker` and `outcome`.
    Failing one step twice counts once: it says as much about the step as about the worker.
    """
    if limit <= 0:
        return frozenset()
    failed: dict[str, set[str]] = {}
    for attempt in attempts:
        if attempt.get("outcome") == S.FAILED and attempt.get("worker"):
            failed.setdefault(attempt["worker"], set()).add(attempt.get("step", ""))
    return frozenset(worker for worker, steps in failed.items() if len(steps) >= limit)


class Placement(enum.StrEnum):
    HERE = "here"  # render it on this worker
    ELSEWHERE = "elsewhere"  # hand it back to the queue for another worker
    NOWHERE = "nowhere"  # this worker may not, and no live worker may: the step fails


def placement(me: str, avoid: Iterable[str], blocked: Iterable[str], alive: Iterable[str]) -> Placement:
    """Where a step taken by worker `me` should render.

    `avoid`: workers that already failed an attempt of this step (a preference: with nobody
    else alive, `me` tries again); `blocked`: workers blocklisted for the run (a rule);
    `alive`: workers registered now.
    """
    blocked, avoid = set(blocked), set(avoid)
    others = [w for w in alive if w != me and w not in blocked]
    if me in blocked:
        return Placement.ELSEWHERE if others else Placement.NOWHERE
    if me in avoid and any(w not in avoid for w in others):
        return Placement.ELSEWHERE
    return Placement.HERE
