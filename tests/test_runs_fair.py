"""Priorities and fair share with real workers: users take turns, higher priority goes first,
an optional per-user cap on running work; the pool itself against the real Redis."""

from __future__ import annotations

import pytest

from l1web.errors import BadRequest, Forbidden
from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus
from l1web.runs.service import RunService, Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User
from tests.test_runs_workers import put_image, put_video, wait_for_run, wait_for_workers

ALICE, BOB, ADMIN = User("alice"), User("bob"), User("admin", True)
JSON = {"Accept": "application/json"}


@pytest.fixture()
def store(settings, state) -> ContentStore:
    return ContentStore(settings.cache_dir, state.cache)


@pytest.fixture()
def service(state, store, settings) -> RunService:
    return run_service(state, store, connect(settings.redis_url, decode=False), user_max_priority=2)


# The pool, against the real Redis ---------------------------------------------------------------
def test_users_take_turns_and_a_newcomer_goes_first(state):
    fair = state.fair
    for n in range(3):
        fair.put("step", 0, "alice", {"run": f"a{n}"})
    assert fair.take("step")[1]["run"] == "a0"
    fair.put("step", 0, "bob", {"run": "b0"})
    fair.put("step", 0, "bob", {"run": "b1"})
    order = [fair.take("step")[1]["run"] for _ in range(4)]
    assert order == ["b0", "a1", "b1", "a2"]  # bob was never served: first; then turns
    assert fair.take("step") is None and fair.waiting("step") == 0


def test_higher_priority_first_and_moving_a_run(state):
    fair = state.fair
    fair.put("plan", 0, "alice", {"run": "low"})
    fair.put("plan", 0, "alice", {"run": "later"})
    fair.put("plan", 5, "bob", {"run": "high"})
    assert fair.take("plan")[1]["run"] == "high"
    assert fair.move("plan", "alice", 0, 3, "later") == 1
    assert [fair.take("plan")[1]["run"] for _ in range(2)] == ["later", "low"]


def test_the_cap_skips_users_at_it_until_they_finish(state):
    fair = state.fair
    fair.put("step", 0, "alice", {"run": "a0"})
    fair.put("step", 0, "alice", {"run": "a1"})
    fair.put("step", 0, "bob", {"run": "b0"})
    assert fair.take("step", cap=1) == ("alice", {"run": "a0"})
    assert fair.take("step", cap=1) == ("bob", {"run": "b0"})
    assert fair.take("step", cap=1) is None  # alice runs one already
    fair.done("alice")
    assert fair.take("step", cap=1) == ("alice", {"run": "a1"})
    assert fair.running() == {"alice": 1, "bob": 1}
    fair.done("bob")
    fair.done("bob")  # reported twice: never below zero
    assert fair.running() == {"alice": 1}


# With real workers ---------------------------------------------------------------------------
def test_bob_is_not_starved_by_alices_twenty_runs(service, state, store, start_worker, tmp_path):
    start_worker()
    start_worker()
    wait_for_workers(service.rq, 2)
    images = [put_image(store, tmp_path, seed=n, size=(1600, 1200)) for n in range(21)]  # about 1 s each
    alices = [service.submit(Submission("blur", [digest]), ALICE)[0]["id"] for digest in images[:20]]
    bobs = service.submit(Submission("blur", [images[20]]), BOB)[0]["id"]
    bob = wait_for_run(state, bobs, timeout=240)
    assert bob["status"] == RunStatus.COMPLETED, bob.get("error")
    finished = sorted(float(wait_for_run(state, run_id, timeout=240)["finished"]) for run_id in alices)
    before_bob = sum(1 for t in finished if t < float(bob["finished"]))
    assert before_bob < 4, f"{before_bob} of alice's runs finished before bob's (FIFO would be 20)"


def test_a_higher_priority_run_overtakes_waiting_ones(service, state, store, start_worker, tmp_path):
    images = [put_image(store, tmp_path, seed=n, size=(320, 240)) for n in range(7)]
    waiting = [service.submit(Submission("blur", [digest]), ALICE)[0]["id"] for digest in images[:6]]
    urgent = service.submit(Submission("blur", [images[6]], priority=2), ALICE)[0]["id"]
    start_worker()  # one worker: runs strictly one after the other
    first = wait_for_run(state, urgent, timeout=240)
    others = [wait_for_run(state, run_id, timeout=240) for run_id in waiting]
    assert all(float(first["finished"]) < float(run["finished"]) for run in others)


def test_the_per_user_cap_keeps_one_users_runs_one_at_a_time(service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=2, size="320x240")
    start_worker(env={"USER_MAX_RUNNING": "1"})
    start_worker(env={"USER_MAX_RUNNING": "1"})
    wait_for_workers(service.rq, 2)
    runs = [service.submit(Submission(effect, [clip]), ALICE)[0]["id"] for effect in ("blur", "sepia", "invert")]
    done = [wait_for_run(state, run_id, timeout=240) for run_id in runs]
    assert all(run["status"] == RunStatus.COMPLETED for run in done)
    spans = sorted((float(run["started"]), float(run["finished"])) for run in done)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.05, f"two of alice's runs overlapped: {spans}"


def test_priorities_have_a_ceiling_for_owners(service, state, store, tmp_path):
    digest = put_image(store, tmp_path)
    with pytest.raises(Forbidden, match="above your ceiling of 2"):
        service.submit(Submission("invert", [digest], priority=3), ALICE)
    run, _ = service.submit(Submission("invert", [digest], priority=2), ALICE)
    assert int(run["priority"]) == 2
    assert int(service.set_priority(run["id"], ALICE, -5)["priority"]) == -5
    with pytest.raises(Forbidden):
        service.set_priority(run["id"], ALICE, 9)
    assert int(service.set_priority(run["id"], ADMIN, 9)["priority"]) == 9
    with pytest.raises(BadRequest):
        Submission.from_json({"recipe": "invert", "priority": 11})
    with pytest.raises(BadRequest):
        Submission.from_json({"recipe": "invert", "priority": "high"})
