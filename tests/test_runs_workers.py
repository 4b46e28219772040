"""Runs executed by real RQ workers against the session's real redis-server: in the test's own
process (`run_jobs`) for the life cycle, in worker processes for several workers at once and kills."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis
from PIL import Image
from rq import Queue, Worker
from rq.registry import FinishedJobRegistry

from l1web.jobs.queues import run_service
from l1web.recipes.parse import parse_recipe
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import RunService, Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User
from tests.helpers import put_image

ALICE = User("alice")
#: Seconds a test waits for a run to finish before failing.
RUN_WAIT = 120


@pytest.fixture()
def rq_conn(settings) -> redis.Redis:
    return connect(settings.redis_url, decode=False)


@pytest.fixture()
def service(state, store, rq_conn) -> RunService:
    return run_service(state, store, rq_conn)


def put_video(store: ContentStore, tmp_path: Path, seconds: float = 2, size: str = "320x240") -> str:
    path = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=duration={seconds}:size={size}:rate=25", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(path)], check=True)
    return store.put_file(path, source="test")


def wait_for_run(state, run_id: str, timeout: float = RUN_WAIT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id[:12]} still {state.runs.get(run_id)['status']} after {timeout} s: "
                         f"{state.runs.step_states(run_id)}")


def submit_recipe(service, state, yaml_text: str, inputs: dict) -> dict:
    recipe = parse_recipe(yaml_text)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=yaml_text,
                       recipe=recipe.to_dict())
    run, created = service.submit(Submission(recipe.id, inputs), ALICE)
    assert created
    return run


def test_effect_run_renders_on_a_worker_with_provenance(service, state, store, run_jobs, tmp_path):
    digest = put_image(store, tmp_path)
    run, created = service.submit(Submission("invert", [digest], "inverted"), ALICE)
    assert created and run["status"] == RunStatus.PENDING
    assert run_jobs() == 1  # the plan job, which renders the one step itself
    run = state.runs.get(run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    original = np.asarray(Image.open(store.path_for(digest)).convert("RGB"), dtype=int)
    result = np.asarray(Image.open(store.path_for(run["output_hash"])).convert("RGB"), dtype=int)
    assert np.array_equal(result, 255 - original)
    prov = run["provenance"]
    assert prov["task_id"] == run["id"]
    assert prov["output"] == {"name": "inverted", "content_hash": run["output_hash"]}
    assert prov["inputs"] == [{"name": "input", "content_hash": digest}]
    assert prov["effects"][0]["name"] == "invert"
    assert prov["infrastructure"]["software"]["content_hash"]
    assert {s["type"] for s in prov["steps"]} == {"SOURCE", "EFFECT"}
    assert f"run:{run['id']}" in state.cache.refs(run["output_hash"])
    assert f"run:{run['id']}" in state.cache.refs(digest)
    # A one-step run is one job: its plan job renders the step rather than enqueueing it.
    assert state.runs.step_states(run["id"])["invert"]["job_id"].startswith("plan-")
    assert FinishedJobRegistry("steps", connection=service.rq).count == 0


def test_identical_submission_returns_the_existing_run_without_new_jobs(service, state, store, rq_conn,
                                                                        run_jobs, tmp_path):
    digest = put_image(store, tmp_path)
    first, _ = service.submit(Submission("grayscale", [digest]), ALICE)
    run_jobs()
    again, created = service.submit(Submission("grayscale", [digest]), ALICE)
    assert not created and again["id"] == first["id"] and again["status"] == RunStatus.COMPLETED
    assert Queue("runs", connection=rq_conn).count == 0


TWO_BRANCHES = """
name: two-branches
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: left, type: EFFECT, config: {effect: dog}, inputs: [clip]}
    - {id: right, type: EFFECT, config: {effect: sepia}, inputs: [clip]}
    - {id: both, type: BLEND, config: {mode: normal, opacity: 0.5}, inputs: [left, right]}
  output: both
"""


def wait_for_workers(connection, count: int, timeout: float = 60) -> None:
    """Until `count` workers have registered with RQ (they preload the job code first)."""
    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=connection)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} workers registered"
        time.sleep(0.1)


def test_independent_branches_run_on_two_workers_at_once(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=3)
    start_worker(name="w-one")
    start_worker(name="w-two")
    wait_for_workers(service.rq, 2)
    run = submit_recipe(service, state, TWO_BRANCHES, {"clip": clip})
    run = wait_for_run(state, run["id"], timeout=240)
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    states = state.runs.step_states(run["id"])
    left, right = states["left"], states["right"]
    assert left["started"] < right["finished"] and right["started"] < left["finished"], (left, right)
    assert states["both"]["started"] >= max(left["finished"], right["finished"])


SHARED_STEP = """
name: shared-step
dag:
  nodes:
    - {id: image, type: SOURCE, config: {input: true, name: image}}
    - {id: inverted, type: EFFECT, config: {effect: invert}, inputs: [image]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [inverted]}
  output: grey
"""


def test_two_runs_needing_the_same_step_render_it_once(service, state, store, start_worker, tmp_path):
    digest = put_image(store, tmp_path, size=(640, 480))
    first = submit_recipe(service, state, SHARED_STEP, {"image": digest})
    second, _ = service.submit(Submission("invert", [digest]), ALICE)
    start_worker(name="w-a")
    start_worker(name="w-b")
    runs = [wait_for_run(state, first["id"]), wait_for_run(state, second["id"])]
    assert all(r["status"] == RunStatus.COMPLETED for r in runs)
    invert_states = [state.runs.step_states(first["id"])["inverted"], state.runs.step_states(second["id"])["invert"]]
    assert sorted(s["status"] for s in invert_states) == [StepStatus.CACHED, StepStatus.COMPLETED]
    assert invert_states[0]["output"] == invert_states[1]["output"]


def test_a_later_run_reuses_steps_already_rendered(service, state, store, run_jobs, tmp_path):
    digest = put_image(store, tmp_path)
    first, _ = service.submit(Submission("invert", [digest]), ALICE)
    run_jobs()
    first = state.runs.get(first["id"])
    second = submit_recipe(service, state, SHARED_STEP, {"image": digest})
    run_jobs()
    second = state.runs.get(second["id"])
    assert second["status"] == RunStatus.COMPLETED, second.get("error")
    states = state.runs.step_states(second["id"])
    assert states["inverted"]["status"] == StepStatus.CACHED
    assert states["inverted"]["output"] == first["output_hash"]
    assert states["grey"]["status"] == StepStatus.COMPLETED


def test_a_killed_worker_leaves_the_run_failed_with_a_reason(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    worker = start_worker(env={"STEP_RETRIES": "0"})  # retries: tests/test_runs_retries.py
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    deadline = time.monotonic() + 60
    while state.runs.step_states(run["id"]).get("dog", {}).get("status") != StepStatus.RUNNING:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(0.5)
    horses = psutil.Process(worker.pid).children()
    assert horses, "the worker has no work-horse process"
    for horse in horses:
        horse.send_signal(signal.SIGKILL)
    run = wait_for_run(state, run["id"], timeout=60)
    assert run["status"] == RunStatus.FAILED
    assert "dog" in run["error"] and "killed" in run["error"].lower(), run["error"]
    assert state.runs.step_states(run["id"])["dog"]["status"] == StepStatus.FAILED


def test_cancelling_a_pending_run_skips_its_steps(service, state, store, tmp_path):
    digest = put_image(store, tmp_path)
    run, _ = service.submit(Submission("blur", [digest]), ALICE)
    cancelled = service.cancel(run["id"], ALICE)
    assert cancelled["status"] == RunStatus.CANCELLED
    assert state.runs.page(status="cancelled")[1] == 1
