"""Automatic retries with real worker processes: an infrastructure failure is tried again
(on another worker when there is one), a deterministic one is not, a worker that keeps failing
a run's steps is given none of them."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import RunService, Submission
from l1web.state import connect
from l1web.store import ContentStore
from tests.test_runs_faults import CHAIN_WITH_BAD_MIDDLE, DOG_THEN_GREY
from tests.test_runs_workers import ALICE, put_video, submit_recipe, wait_for_run, wait_for_workers


@pytest.fixture()
def store(settings, state) -> ContentStore:
    return ContentStore(settings.cache_dir, state.cache)


@pytest.fixture()
def service(state, store, settings) -> RunService:
    return run_service(state, store, connect(settings.redis_url, decode=False))


def wait_running(state, run_id: str, step_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        step = state.runs.step_states(run_id).get(step_id, {})
        if step.get("status") == StepStatus.RUNNING and step.get("worker"):
            return step
        assert time.monotonic() < deadline, f"step {step_id} never started: {step}"
        time.sleep(0.05)


def kill_horse(worker) -> None:
    horses = psutil.Process(worker.pid).children()
    assert horses, "the worker has no work-horse process"
    for horse in horses:
        horse.send_signal(signal.SIGKILL)


def test_a_killed_work_horse_is_retried_on_the_other_worker(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    workers = {name: start_worker("steps", "runs", name=name) for name in ("w-one", "w-two")}
    wait_for_workers(service.rq, 2)
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    victim = wait_running(state, run["id"], "dog")["worker"]
    time.sleep(0.5)
    kill_horse(workers[victim])
    run = wait_for_run(state, run["id"], timeout=240)
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    dog = state.runs.step_states(run["id"])["dog"]
    assert dog["status"] == StepStatus.COMPLETED and not dog.get("error")
    first, second = dog["attempts"]
    assert first["worker"] == victim and first["outcome"] == "failed" and first["cause"] == "infrastructure"
    assert "killed" in first["reason"] and first["finished"] >= first["started"]
    assert second["worker"] != victim and second["outcome"] == "completed"
    assert second["started"] >= first["finished"]
    prov = {s["step_id"]: s for s in run["provenance"]["steps"]}
    assert [a["worker"] for a in prov["dog"]["attempts"]] == [victim, second["worker"]]
    assert len(prov["grey"]["attempts"]) == 1


def test_a_one_step_run_rendered_by_its_plan_job_is_retried_too(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    workers = {name: start_worker("steps", "runs", name=name) for name in ("w-one", "w-two")}
    wait_for_workers(service.rq, 2)
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    victim = wait_running(state, run["id"], "dog")["worker"]
    time.sleep(0.5)
    kill_horse(workers[victim])
    run = wait_for_run(state, run["id"], timeout=240)
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    attempts = state.runs.step_states(run["id"])["dog"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "completed"]
    assert attempts[0]["job_id"].startswith("plan-") and attempts[1]["job_id"].startswith("step-")
    assert attempts[0]["worker"] != attempts[1]["worker"]


def test_a_deterministic_failure_is_tried_once(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=1, size="160x120")
    start_worker(name="w-one")
    start_worker(name="w-two")
    run = wait_for_run(state, submit_recipe(service, state, CHAIN_WITH_BAD_MIDDLE, {"clip": clip})["id"])
    assert run["status"] == RunStatus.FAILED and "past the end" in run["error"]
    cut = state.runs.step_states(run["id"])["cut"]
    assert cut["status"] == StepStatus.FAILED
    assert [(a["outcome"], a["cause"]) for a in cut["attempts"]] == [("failed", "deterministic")]


def test_a_worker_blocklisted_for_a_run_is_not_given_its_steps(service, state, store, start_worker, tmp_path):
    # One worker, blocklisted after one failed step: its retry may go to no one, so the step fails
    # with that reason rather than being rendered again by the worker that failed it.
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    worker = start_worker("steps", "runs", name="w-only", env={"WORKER_BLOCKLIST_AFTER": "1"})
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    wait_running(state, run["id"], "dog")
    time.sleep(0.5)
    kill_horse(worker)
    run = wait_for_run(state, run["id"], timeout=60)
    assert run["status"] == RunStatus.FAILED
    assert "blocklisted" in run["error"], run["error"]
    dog = state.runs.step_states(run["id"])["dog"]
    assert [a["worker"] for a in dog["attempts"]] == ["w-only"]


def test_without_another_worker_the_retry_runs_on_the_same_one(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    worker = start_worker("steps", "runs", name="w-only", env={"WORKER_BLOCKLIST_AFTER": "0"})
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    wait_running(state, run["id"], "dog")
    time.sleep(0.5)
    kill_horse(worker)
    run = wait_for_run(state, run["id"], timeout=240)
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    dog = state.runs.step_states(run["id"])["dog"]
    assert [(a["worker"], a["outcome"]) for a in dog["attempts"]] == [("w-only", "failed"), ("w-only", "completed")]


def test_a_horse_killed_on_a_later_piece_of_its_token_costs_only_that_piece(service, state, store, start_worker,
                                                                            tmp_path):
    """One token job renders the runs queued behind it (`take_work`'s turn); a horse killed on the
    second of them retries that step only: the first stays done, the ones after keep their tokens."""
    clip = put_video(store, tmp_path, seconds=4, size="640x360")
    runs = [service.submit(Submission(effect, [clip]), ALICE)[0]["id"] for effect in ("invert", "dog", "sepia")]
    worker = start_worker("steps", "runs", name="w-one")  # started once all three wait: one token goes on

    def step_of(run_id):
        return next(s for s in state.runs.step_states(run_id).values() if s.get("type") != "SOURCE"
                    and s.get("rq_job"))

    deadline = time.monotonic() + 120
    while True:
        states = state.runs.step_states(runs[1])
        dog = states.get("dog", {})
        if dog.get("status") == StepStatus.RUNNING:
            break
        assert time.monotonic() < deadline, f"the second run's step never started: {dog}"
        time.sleep(0.02)
    first = step_of(runs[0])
    assert first["status"] == StepStatus.COMPLETED and dog["rq_job"] == first["rq_job"]  # the same token went on
    time.sleep(0.3)
    kill_horse(worker)
    done = [wait_for_run(state, run_id, timeout=240) for run_id in runs]
    assert all(run["status"] == RunStatus.COMPLETED for run in done), [run.get("error") for run in done]
    dog = state.runs.step_states(runs[1])["dog"]
    killed, retried = dog["attempts"]
    assert killed["outcome"] == "failed" and killed["cause"] == "infrastructure" and "killed" in killed["reason"]
    assert retried["outcome"] == "completed"
    # The dead attempt's render claim was dropped with it: the retry did not wait for it to lapse (60 s).
    assert retried["started"] - killed["finished"] < 30, (killed, retried)
    assert len(step_of(runs[0])["attempts"]) == 1 and len(step_of(runs[2])["attempts"]) == 1
