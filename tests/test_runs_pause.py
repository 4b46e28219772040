"""Pause, resume and requeue with real worker processes (a step paused mid-render) or in this
process (`run_jobs`); submitting paused; pausing the whole queue."""

from __future__ import annotations

import time

import pytest
from rq import Queue

from l1web.errors import Forbidden
from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import RunService, Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User
from tests.test_runs_faults import DOG_THEN_GREY
from tests.test_runs_retries import wait_running
from tests.test_runs_workers import ALICE, put_image, put_video, submit_recipe, wait_for_run

ADMIN = User("admin", True)
JSON = {"Accept": "application/json"}


@pytest.fixture()
def store(settings, state) -> ContentStore:
    return ContentStore(settings.cache_dir, state.cache)


@pytest.fixture()
def service(state, store, settings) -> RunService:
    return run_service(state, store, connect(settings.redis_url, decode=False))


def wait_step(state, run_id: str, step_id: str, statuses, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        step = state.runs.step_states(run_id).get(step_id, {})
        if step.get("status") in statuses:
            return step
        assert time.monotonic() < deadline, f"step {step_id} is {step.get('status')}, not one of {statuses}"
        time.sleep(0.05)


def test_pause_lets_the_running_step_finish_starts_no_other_and_resume_finishes(service, state, store,
                                                                                 start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    start_worker()
    start_worker()
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    wait_running(state, run["id"], "dog")
    paused = service.pause(run["id"], ALICE)
    assert paused["status"] == RunStatus.PAUSED
    dog = wait_step(state, run["id"], "dog", {StepStatus.COMPLETED})  # the running step finishes
    time.sleep(2)  # two idle workers: had grey been enqueued, it would be running by now
    states = state.runs.step_states(run["id"])
    assert states["grey"]["status"] == StepStatus.PENDING and "started" not in states["grey"]
    assert state.runs.get(run["id"])["status"] == RunStatus.PAUSED
    assert dog["finished"] <= time.time()
    resumed = service.resume(run["id"], ALICE)
    assert resumed["status"] == RunStatus.RUNNING
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    grey = state.runs.step_states(run["id"])["grey"]
    assert grey["status"] == StepStatus.COMPLETED and grey["started"] >= dog["finished"]


def test_only_pending_or_running_runs_pause_and_only_paused_ones_resume(service, state, store, tmp_path):
    from l1web.errors import Conflict

    digest = put_image(store, tmp_path)
    run, _ = service.submit(Submission("invert", [digest]), ALICE)
    with pytest.raises(Conflict, match="only paused runs can be resumed"):
        service.resume(run["id"], ALICE)
    service.cancel(run["id"], ALICE)
    with pytest.raises(Conflict, match="only pending or running runs can be paused"):
        service.pause(run["id"], ALICE)


def test_a_run_submitted_paused_is_planned_only_when_resumed(service, state, store, run_jobs, tmp_path):
    digest = put_image(store, tmp_path)
    run, created = service.submit(Submission("invert", [digest], paused=True), ALICE)
    assert created and run["status"] == RunStatus.PAUSED
    assert Queue("runs", connection=service.rq).count == 0  # nothing enqueued
    assert run_jobs() == 0
    assert state.runs.get(run["id"])["status"] == RunStatus.PAUSED
    assert service.resume(run["id"], ALICE)["status"] == RunStatus.PENDING
    run_jobs()
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")


def test_requeue_renders_only_what_was_not_done(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    start_worker()
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    wait_running(state, run["id"], "dog")
    service.pause(run["id"], ALICE)
    dog = wait_step(state, run["id"], "dog", {StepStatus.COMPLETED})
    cancelled = service.cancel(run["id"], ALICE)
    assert cancelled["status"] == RunStatus.CANCELLED
    assert state.runs.step_states(run["id"])["grey"]["status"] == StepStatus.SKIPPED
    requeued = service.requeue(run["id"], ALICE)
    assert requeued["status"] == RunStatus.RUNNING and int(requeued["attempt"]) == 2
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    states = state.runs.step_states(run["id"])
    assert states["dog"] == dog  # kept as it was: not rendered again, not even looked at
    assert states["grey"]["status"] == StepStatus.COMPLETED and len(states["grey"]["attempts"]) == 1


def test_an_admin_pauses_the_whole_queue(service, state, store, run_jobs, tmp_path):
    digest = put_image(store, tmp_path)
    with pytest.raises(Forbidden):
        service.pause_queue(ALICE)
    service.pause_queue(ADMIN)
    run, _ = service.submit(Submission("invert", [digest]), ALICE)
    run_jobs()
    wait_step(state, run["id"], "invert", {StepStatus.PENDING}, timeout=60)  # the plan job ran
    assert state.runs.get(run["id"])["status"] == RunStatus.RUNNING  # and its step did not start
    assert state.runs.step_states(run["id"])["invert"]["status"] == StepStatus.PENDING
    assert service.resume_queue(ADMIN) == 1
    run_jobs()
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")


def test_the_queue_routes_are_for_admins(admin_client, alice_client, state):
    assert alice_client.get("/admin/queue", headers=JSON).status_code == 403
    assert alice_client.post("/admin/queue/pause", headers=JSON).status_code == 403
    assert not state.runs.queue_paused()
    response = admin_client.post("/admin/queue/pause", headers=JSON)
    assert response.status_code == 200 and response.json == {"paused": True}
    assert admin_client.get("/admin/queue", headers=JSON).json == {"paused": True}
    assert admin_client.post("/admin/queue/stop", headers=JSON).status_code == 400
    assert admin_client.post("/admin/queue/resume", headers=JSON).json == {"paused": False}
