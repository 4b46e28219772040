"""The run and step life cycle (`l1web/lifecycle.py`): every (status, event) pair, and the decisions."""

from __future__ import annotations

import itertools

import pytest

from l1web import lifecycle
from l1web.lifecycle import Cause, IllegalTransition, Placement, RunEvent, StepEvent
from l1web.status import RunStatus, StepStatus

S, R = StepStatus, RunStatus

# The specification, written out by hand (not derived from the module): (from, event) → to.
STEP_SPEC = {
    (S.PENDING, StepEvent.ENQUEUE): S.QUEUED,
    (S.QUEUED, StepEvent.START): S.RUNNING,
    (S.RETRYING, StepEvent.START): S.RUNNING,
    (S.RUNNING, StepEvent.SUCCEED): S.COMPLETED,
    (S.RUNNING, StepEvent.REUSE): S.CACHED,
    (S.PENDING, StepEvent.REUSE): S.CACHED,
    (S.QUEUED, StepEvent.FAIL): S.FAILED,
    (S.RUNNING, StepEvent.FAIL): S.FAILED,
    (S.RETRYING, StepEvent.FAIL): S.FAILED,
    (S.QUEUED, StepEvent.RETRY): S.RETRYING,
    (S.RUNNING, StepEvent.RETRY): S.RETRYING,
    (S.RUNNING, StepEvent.CANCEL): S.CANCELLED,
    (S.PENDING, StepEvent.SKIP): S.SKIPPED,
    (S.QUEUED, StepEvent.SKIP): S.SKIPPED,
    (S.RETRYING, StepEvent.SKIP): S.SKIPPED,
    (S.QUEUED, StepEvent.DEFER): S.PENDING,
    (S.RETRYING, StepEvent.DEFER): S.PENDING,
    (S.FAILED, StepEvent.REQUEUE): S.PENDING,
    (S.CANCELLED, StepEvent.REQUEUE): S.PENDING,
    (S.SKIPPED, StepEvent.REQUEUE): S.PENDING,
    (S.RETRYING, StepEvent.REQUEUE): S.PENDING,
}
RUN_SPEC = {
    (R.PENDING, RunEvent.START): R.RUNNING,
    (R.RUNNING, RunEvent.COMPLETE): R.COMPLETED,
    (R.PAUSED, RunEvent.COMPLETE): R.COMPLETED,
    (R.PENDING, RunEvent.FAIL): R.FAILED,
    (R.RUNNING, RunEvent.FAIL): R.FAILED,
    (R.PAUSED, RunEvent.FAIL): R.FAILED,
    (R.PENDING, RunEvent.CANCEL): R.CANCELLED,
    (R.RUNNING, RunEvent.CANCEL): R.CANCELLED,
    (R.PAUSED, RunEvent.CANCEL): R.CANCELLED,
    (R.PENDING, RunEvent.PAUSE): R.PAUSED,
    (R.RUNNING, RunEvent.PAUSE): R.PAUSED,
    (R.PAUSED, RunEvent.RESUME): R.RUNNING,
    (R.PAUSED, RunEvent.RELEASE): R.PENDING,
    (R.FAILED, RunEvent.REQUEUE): R.RUNNING,
    (R.CANCELLED, RunEvent.REQUEUE): R.RUNNING,
    (R.FAILED, RunEvent.RERUN): R.PENDING,
    (R.CANCELLED, RunEvent.RERUN): R.PENDING,
    (R.FAILED, RunEvent.FORCE_RERUN): R.PENDING,
    (R.CANCELLED, RunEvent.FORCE_RERUN): R.PENDING,
    (R.COMPLETED, RunEvent.FORCE_RERUN): R.PENDING,
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(StepStatus, StepEvent)))
def test_every_step_status_and_event(status, event):
    expected = STEP_SPEC.get((status, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            lifecycle.step_after(status, event)
        assert not lifecycle.allowed(status, event)
    else:
        assert lifecycle.step_after(status, event) == expected
        assert lifecycle.allowed(status, event) and status in lifecycle.sources(event)


@pytest.mark.parametrize(("status", "event"), list(itertools.product(RunStatus, RunEvent)))
def test_every_run_status_and_event(status, event):
    expected = RUN_SPEC.get((status, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            lifecycle.run_after(status, event)
    else:
        assert lifecycle.run_after(status, event) == expected


def test_statuses_as_plain_text_work_too():
    # Redis hands statuses back as plain strings.
    assert lifecycle.step_after("queued", StepEvent.START) == "running"
    assert lifecycle.run_after("paused", RunEvent.RESUME) == "running"


def test_final_statuses_have_no_way_out_but_requeue_or_rerun():
    for status in StepStatus:
        if status.final:
            assert {e for e in StepEvent if lifecycle.allowed(status, e)} <= {StepEvent.REQUEUE}
    for status in RunStatus:
        if status.final:
            assert {e for e in RunEvent if lifecycle.allowed(status, e)} <= {
                RunEvent.REQUEUE, RunEvent.RERUN, RunEvent.FORCE_RERUN}


def test_done_and_broken_partition_the_final_step_statuses():
    assert {s for s in StepStatus if s.final} == {s for s in StepStatus if s.done} | {s for s in StepStatus if s.broken}
    assert not {s for s in StepStatus if s.done} & {s for s in StepStatus if s.broken}
    assert {s for s in RunStatus if s.live} == {R.PENDING, R.RUNNING, R.PAUSED}


def states(**statuses: str) -> dict[str, dict]:
    return {sid: {"status": status} for sid, status in statuses.items()}


DIAMOND = [{"step_id": "a", "inputs": []}, {"step_id": "b", "inputs": ["a"]},
           {"step_id": "c", "inputs": ["a"]}, {"step_id": "d", "inputs": ["b", "c"]}]


def test_ready_needs_every_input_done_and_the_step_pending():
    st = states(a="cached", b="completed", c="running", d="pending")
    assert not lifecycle.ready(DIAMOND[3], st)
    st["c"]["status"] = "completed"
    assert lifecycle.ready(DIAMOND[3], st)
    st["d"]["status"] = "queued"
    assert not lifecycle.ready(DIAMOND[3], st)


@pytest.mark.parametrize("broken", ["failed", "cancelled", "skipped"])
def test_a_broken_input_blocks_a_pending_step(broken):
    st = states(a="completed", b=broken, c="running", d="pending")
    assert lifecycle.blocked_by(DIAMOND[3], st) == "b"
    st["d"]["status"] = "skipped"
    assert lifecycle.blocked_by(DIAMOND[3], st) is None


def test_outcome_of_a_settled_run():
    done = {"a": {"status": "cached", "output": "x"}, "b": {"status": "completed", "output": "y"}}
    end = lifecycle.outcome("b", done)
    assert end.event == RunEvent.COMPLETE and end.output == "y" and end.reason == ""
    bad = {"a": {"status": "failed", "error": "first"}, "b": {"status": "failed", "error": "second"},
           "c": {"status": "skipped"}}
    end = lifecycle.outcome("c", bad, order=["b", "a", "c"])
    assert end.event == RunEvent.FAIL and end.reason == "step 'b' failed: second"
    assert lifecycle.outcome("c", {"c": {"status": "skipped"}}).reason == "the output step did not complete"
    assert lifecycle.settled(bad) and not lifecycle.settled(states(a="completed", b="retrying"))


@pytest.mark.parametrize(("kind", "message", "cause"), [
    ("AbandonedJobError", "", Cause.INFRASTRUCTURE),
    ("JobTimeoutException", "Task exceeded maximum timeout value", Cause.INFRASTRUCTURE),
    ("WorkHorseKilled", "the worker process was killed (signal 9)", Cause.INFRASTRUCTURE),
    ("WorkerShutdown", "", Cause.INFRASTRUCTURE),
    ("FFmpegTimeout", "ffmpeg timed out after 1 s", Cause.INFRASTRUCTURE),
    ("OSError", "[Errno 28] No space left on device", Cause.INFRASTRUCTURE),
    ("StepError", "SEGMENT: offset 30 is past the end", Cause.DETERMINISTIC),
    ("MediaError", "not a media file", Cause.DETERMINISTIC),
    ("ValueError", "unknown effect parameter", Cause.DETERMINISTIC),
])
def test_classify(kind, message, cause):
    assert lifecycle.classify(kind, message) == cause


def test_retry_event_counts_attempts():
    infra, det = Cause.INFRASTRUCTURE, Cause.DETERMINISTIC
    assert [lifecycle.retry_event(infra, n, 2) for n in (1, 2, 3)] == [StepEvent.RETRY, StepEvent.RETRY,
                                                                      StepEvent.FAIL]
    assert lifecycle.retry_event(det, 1, 2) == StepEvent.FAIL
    assert lifecycle.retry_event(infra, 1, 0) == StepEvent.FAIL


def test_blocklist_counts_different_failed_steps_per_worker():
    attempts = [{"step": "a", "worker": "w1", "outcome": "failed"}, {"step": "b", "worker": "w1", "outcome": "failed"},
                {"step": "a", "worker": "w2", "outcome": "failed"}, {"step": "a", "worker": "w2", "outcome": "failed"},
                {"step": "c", "worker": "w2", "outcome": "completed"}]
    assert lifecycle.blocklisted(attempts, 2) == {"w1"}  # w2 failed one step twice: that counts once
    assert lifecycle.blocklisted(attempts, 1) == {"w1", "w2"}
    assert lifecycle.blocklisted(attempts, 0) == frozenset()


@pytest.mark.parametrize(("me", "avoid", "blocked", "alive", "where"), [
    ("w1", [], [], ["w1", "w2"], Placement.HERE),
    ("w1", ["w1"], [], ["w1", "w2"], Placement.ELSEWHERE),  # w2 has not failed it
    ("w1", ["w1"], [], ["w1"], Placement.HERE),  # nobody else: try again here
    ("w1", ["w1", "w2"], [], ["w1", "w2"], Placement.HERE),  # both failed it: a preference only
    ("w1", [], ["w1"], ["w1", "w2"], Placement.ELSEWHERE),
    ("w1", [], ["w1"], ["w1"], Placement.NOWHERE),  # blocklisted and alone: never here
    ("w1", [], ["w1", "w2"], ["w1", "w2"], Placement.NOWHERE),
])
def test_placement(me, avoid, blocked, alive, where):
    assert lifecycle.placement(me, avoid, blocked, alive) == where


def test_initial_step_status():
    assert lifecycle.initial({"type": "SOURCE"}, True) == S.CACHED
    assert lifecycle.initial({"type": "SOURCE"}, False) == S.FAILED
    assert lifecycle.initial({"type": "EFFECT"}, True) == S.PENDING
