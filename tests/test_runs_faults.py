"""Runs under faults, with a real redis-server and real worker processes.

A step that fails for real skips what depends on it; a Redis restart (AOF) and an app restart
lose no run, step, timing, index or provenance; a worker lost whole (main process and work
horse, SIGKILL) does not leave its run running: another worker's sweep fails the step.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devl2.testing import sign_in
from l1web.devtools.processes import RedisServer
from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import StateManager, connect, keys
from l1web.store import ContentStore
from l1web.web import create_app
from tests.helpers import put_image
from tests.test_runs_workers import ALICE, put_video, submit_recipe, wait_for_run

#: Worker timings for the lost-worker test: heartbeat, grace after it, sweep interval (seconds).
FAST_SWEEP = {"WORKER_HEARTBEAT": "1", "WORKER_ABANDON_GRACE": "3", "WORKER_MAINTENANCE": "1"}
#: The lost-worker test checks that the step fails: no retry (tests/test_runs_retries.py has those).
NO_RETRY = {**FAST_SWEEP, "STEP_RETRIES": "0"}
#: Upper bound for a lost worker's run to end, seconds (heartbeat + grace + sweep, and slack).
LOST_WORKER_BOUND = 30


# A failing middle step ---------------------------------------------------------------------
CHAIN_WITH_BAD_MIDDLE = """
name: bad-middle
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: small, type: RESIZE, config: {width: 64, height: 48}, inputs: [clip]}
    - {id: cut, type: SEGMENT, config: {offset: 30}, inputs: [small]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [cut]}
  output: grey
"""


def test_a_failing_middle_step_skips_its_dependents(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=1, size="160x120")
    start_worker()
    run = submit_recipe(service, state, CHAIN_WITH_BAD_MIDDLE, {"clip": clip})
    run = wait_for_run(state, run["id"])
    steps = state.runs.step_states(run["id"])
    assert run["status"] == RunStatus.FAILED
    assert "'cut'" in run["error"] and "past the end" in run["error"], run["error"]
    assert steps["clip"]["status"] == StepStatus.CACHED
    assert steps["small"]["status"] == StepStatus.COMPLETED and store.has(steps["small"]["output"])
    assert steps["cut"]["status"] == StepStatus.FAILED and "past the end" in steps["cut"]["error"]
    assert steps["grey"]["status"] == StepStatus.SKIPPED and "'cut'" in steps["grey"]["error"]
    assert "output" not in steps["grey"] and not run.get("output_hash")
    assert state.runs.page(status="failed")[1] == 1 and state.runs.page(status="running")[1] == 0


# Redis restart -----------------------------------------------------------------------------
@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF on), so restarting it disturbs no other test."""
    server = RedisServer(tmp_path / "own-redis", aof=True).start()
    yield server
    server.stop()


def snapshot(client, run_id: str) -> dict:
    """Every key of a run, and its place in every index, as raw Redis data."""
    run_key = keys.run(run_id)
    indexes = [keys.runs_index(), keys.runs_by_user(ALICE.name)] + [
        keys.runs_by_status(s) for s in RunStatus] + [keys.runs_by_user_status(ALICE.name, s) for s in RunStatus]
    return {
        "run": client.hgetall(run_key),
        "steps": client.hgetall(keys.run_steps(run_id)),
        "states": client.hgetall(keys.run_step_status(run_id)),
        "indexes": {index: client.zscore(index, run_key) for index in indexes},
    }


SLOW_CHAIN = """
name: slow-chain
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: edges, type: EFFECT, config: {effect: dog}, inputs: [clip]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [edges]}
  output: grey
"""


def test_a_redis_restart_loses_nothing_and_a_live_run_completes(own_redis, settings, start_worker, tmp_path):
    url = f"{own_redis.url}/5"
    client = connect(url)
    state = StateManager(client)
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(url, decode=False))
    start_worker(env={"REDIS_URL": url})
    image = put_image(store, tmp_path)
    done = wait_for_run(state, service.submit(Submission("invert", [image], "inverted"), ALICE)[0]["id"])
    assert done["status"] == RunStatus.COMPLETED, done.get("error")
    before = snapshot(client, done["id"])

    clip = put_video(store, tmp_path, seconds=3, size="320x240")
    live = submit_recipe(service, state, SLOW_CHAIN, {"clip": clip})
    deadline = time.monotonic() + 60
    while state.runs.step_states(live["id"]).get("edges", {}).get("status") != StepStatus.RUNNING:
        assert time.monotonic() < deadline, f"the step never started: {state.runs.step_states(live['id'])}"
        time.sleep(0.05)

    own_redis.restart()  # SIGTERM (the AOF is flushed), then a new server on the same dir and port

    assert snapshot(client, done["id"]) == before
    assert state.runs.get(done["id"])["provenance"]["output"]["content_hash"] == done["output_hash"]
    assert state.runs.step_states(done["id"])["invert"]["duration"] >= 0
    assert [r["id"] for r in state.runs.page(status="completed")[0]] == [done["id"]]
    assert state.runs.get(live["id"])["status"] == RunStatus.RUNNING
    live = wait_for_run(state, live["id"], timeout=180)
    assert live["status"] == RunStatus.COMPLETED, live.get("error")
    states = state.runs.step_states(live["id"])
    assert states["edges"]["status"] == states["grey"]["status"] == StepStatus.COMPLETED
    assert live["provenance"]["output"]["content_hash"] == live["output_hash"] and store.has(live["output_hash"])
    assert [r["id"] for r in state.runs.page(user=ALICE.name)[0]] == [live["id"], done["id"]]


# App restart -------------------------------------------------------------------------------
def test_a_new_app_on_the_same_redis_sees_the_same_runs(settings, service, state, store, start_worker,
                                                       dev_l2, tmp_path):
    image = put_image(store, tmp_path)
    start_worker()
    done = wait_for_run(state, service.submit(Submission("invert", [image]), ALICE)[0]["id"])
    failed = wait_for_run(state, submit_recipe(
        service, state, CHAIN_WITH_BAD_MIDDLE, {"clip": put_video(store, tmp_path, seconds=1, size="160x120")})["id"])
    seen = []
    for _ in range(2):  # two apps built from settings alone, each with its own Redis clients
        client = sign_in(create_app(settings), dev_l2, "alice")
        listing = client.get("/runs", headers={"Accept": "application/json"}).json
        one = client.get(f"/runs/{done['id']}", headers={"Accept": "application/json"}).json
        prov = client.get(f"/runs/{done['id']}/provenance").json
        page = client.get(f"/run/{failed['id']}")
        seen.append(([r["id"] for r in listing["runs"]], listing["total"], one["status"], one["output_hash"],
                     prov["output"]["content_hash"], page.status_code))
        assert "past the end" in page.get_data(as_text=True)
    assert seen[0] == seen[1] == ([failed["id"], done["id"]], 2, "completed", done["output_hash"],
                                  done["output_hash"], 200)


# A worker lost whole -----------------------------------------------------------------------
DOG_THEN_GREY = """
name: dog-then-grey
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [clip]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [dog]}
  output: grey
"""


@pytest.mark.parametrize("job_kind", ["plan", "step"], ids=["one-step run: its plan job renders",
                                                          "two-step run: a step job renders"])
def test_a_worker_lost_whole_mid_step_fails_its_run_within_a_bound(service, state, store, start_worker, tmp_path,
                                                                   job_kind):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    doomed = start_worker("steps", "runs", name="doomed", env=NO_RETRY)
    if job_kind == "plan":
        run, _ = service.submit(Submission("dog", [clip]), ALICE)
    else:
        run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    deadline = time.monotonic() + 60
    while state.runs.step_states(run["id"]).get("dog", {}).get("status") != StepStatus.RUNNING:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(1)
    horses = psutil.Process(doomed.pid).children()
    assert horses, "the worker has no work-horse process"
    groups = {os.getpgid(p.pid) for p in horses} | {os.getpgid(doomed.pid)}
    for group in groups:  # the horse runs in a process group of its own
        os.killpg(group, signal.SIGKILL)
    doomed.wait(10)
    lost_at = time.monotonic()
    assert state.runs.get(run["id"])["status"] == RunStatus.RUNNING  # nobody is left to say otherwise

    start_worker("steps", "runs", name="rescuer", env=NO_RETRY)
    run = wait_for_run(state, run["id"], timeout=LOST_WORKER_BOUND)
    assert time.monotonic() - lost_at < LOST_WORKER_BOUND
    assert run["status"] == RunStatus.FAILED
    assert "'dog'" in run["error"] and "died" in run["error"], run["error"]
    steps = state.runs.step_states(run["id"])
    dog = steps["dog"]
    assert dog["status"] == StepStatus.FAILED and dog["finished"] >= dog["started"]
    assert dog["job_id"].startswith(f"{job_kind}-")
    assert job_kind == "plan" or steps["grey"]["status"] == StepStatus.SKIPPED
    assert state.runs.page(status="running")[1] == 0
