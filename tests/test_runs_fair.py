"""Priorities and fair share with real workers: users take turns, higher priority goes first,
an optional per-user cap on running work; the pool itself against the real Redis."""

from __future__ import annotations

import time

import pytest
from rq.job import Job, JobStatus

from l1web.errors import BadRequest, Forbidden
from l1web.jobs import queues
from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import RunService, Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User
from tests.test_runs_retries import wait_running
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


def test_a_token_records_what_it_took_and_its_end_counts_once(state):
    fair = state.fair
    fair.put("step", 0, "alice", {"run": "a0"})
    fair.put("step", 0, "alice", {"run": "a1"})
    assert fair.take("step", holder="token-step-1") == ("alice", {"run": "a0"})
    assert fair.take("step", holder="token-step-2") == ("alice", {"run": "a1"})
    # What a failure callback reads back, even when the process that took it died at once.
    assert fair.taken("token-step-1") == ("alice", {"run": "a0"})
    assert fair.holding(["token-step-1", "token-step-2", "token-step-3"]) == [True, True, False]
    assert fair.done("alice", "token-step-1") is True
    assert fair.done("alice", "token-step-1") is False  # reported again (killed horse, then RQ's callback)
    assert fair.running() == {"alice": 1} and fair.taken("token-step-1") is None
    assert fair.taken("token-step-2") == ("alice", {"run": "a1"})


# Lost tokens ---------------------------------------------------------------------------------
def token_ids(rq, kind: str = queues.PLAN) -> list[str]:
    return [i for i in queues.queue(rq, queues.TOKEN_QUEUES[kind]).get_job_ids() if i.startswith(f"token-{kind}-")]


def test_a_lost_token_is_reissued_once_and_a_second_sweep_adds_none(service, state, store, tmp_path):
    rq = service.rq
    first, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=1)]), ALICE)
    service.submit(Submission("invert", [put_image(store, tmp_path, seed=2)]), BOB)
    assert len(token_ids(rq)) == 2
    queues.fetch(rq, token_ids(rq)[0]).delete()  # lost: the piece still waits, nobody comes for it
    assert state.fair.waiting(queues.PLAN) == 2 and len(token_ids(rq)) == 1
    assert queues.reissue_lost_tokens(rq, state) == {"plan": 1}
    assert len(token_ids(rq)) == 2
    assert queues.reissue_lost_tokens(rq, state) == {}  # idempotent: every waiting piece has its token
    assert len(token_ids(rq)) == 2
    assert state.runs.get(first["id"])["status"] == RunStatus.PENDING


def test_a_run_whose_token_was_lost_completes_once_a_worker_sweeps(service, state, store, start_worker, tmp_path):
    rq = service.rq
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    for job_id in token_ids(rq):
        queues.fetch(rq, job_id).delete()
    assert token_ids(rq) == [] and state.fair.waiting(queues.PLAN) == 1
    start_worker(env={"WORKER_MAINTENANCE": "1"})
    done = wait_for_run(state, run["id"], timeout=60)  # the sweep runs at most a second apart, then 0.5 s recount
    assert done["status"] == RunStatus.COMPLETED, done.get("error")
    assert state.fair.waiting(queues.PLAN) == 0 and state.fair.running() == {}


def test_spare_tokens_take_nothing_and_nothing_renders_twice(service, state, store, start_worker, tmp_path):
    rq = service.rq
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    extra = [queues.enqueue_token(rq, queues.PLAN).id for _ in range(2)]  # two tokens too many
    tokens = token_ids(rq)
    assert len(tokens) == 3 and set(extra) < set(tokens)
    start_worker()
    start_worker()
    done = wait_for_run(state, run["id"], timeout=120)
    assert done["status"] == RunStatus.COMPLETED, done.get("error")
    deadline = time.monotonic() + 60
    while any(queues.fetch(rq, t).get_status() != JobStatus.FINISHED for t in tokens):
        assert time.monotonic() < deadline, [queues.fetch(rq, t).get_status() for t in tokens]
        time.sleep(0.1)
    results = [queues.fetch(rq, t).return_value() for t in tokens]
    assert results.count({"status": "nothing waiting"}) == 2, results  # the two spares ended at once
    assert [r.get("planned") for r in results].count(True) == 1, results
    (step,) = [s for s in state.runs.step_states(run["id"]).values() if s.get("attempts")]
    assert len(step["attempts"]) == 1
    assert state.cache.stats().get("cache_misses") == 1
    assert state.fair.running() == {} and state.fair.waiting(queues.PLAN) == 0


# A token that goes on to the next piece -----------------------------------------------------
def test_a_token_done_with_its_piece_takes_the_next_in_a_queued_tokens_place(service, state):
    rq, fair = service.rq, state.fair
    for piece in ({"run": "a0", "id": "plan-a0"}, {"run": "a1", "id": "plan-a1"}):
        fair.put(queues.PLAN, 0, "alice", piece)
    fair.put(queues.PLAN, 0, "bob", {"run": "b0", "id": "plan-b0"})
    tokens = [queues.enqueue_token(rq, queues.PLAN).id for _ in range(3)]
    first = tokens[0]
    rq.lrem(queues.queue(rq, queues.RUNS_QUEUE).key, 1, first)  # popped by a worker, as RQ does
    assert fair.take(queues.PLAN, holder=first) == ("alice", {"run": "a0", "id": "plan-a0"})

    got = queues.next_piece(rq, fair, queues.PLAN, "alice", first, cap=0, worker="w1")
    assert got == ("bob", {"run": "b0", "id": "plan-b0"})  # chosen as `take` chooses: bob's turn
    assert token_ids(rq) == tokens[1:2]  # the newest queued token went, in its place
    assert not rq.exists(Job.key_for(tokens[2]))  # and its RQ record with it
    assert fair.taken(first) == got and fair.running() == {"bob": 1}
    assert queues.next_piece(rq, fair, queues.PLAN, "bob", first, cap=0, worker="w1")[1]["run"] == "a1"
    assert token_ids(rq) == [] and not rq.exists(Job.key_for(tokens[1]))
    assert queues.next_piece(rq, fair, queues.PLAN, "alice", first, cap=0, worker="w1") is None  # nothing left
    assert fair.running() == {} and fair.taken(first) is None and fair.waiting(queues.PLAN) == 0
    assert queues.reissue_lost_tokens(rq, state) == {}


def test_a_token_takes_no_further_piece_when_none_is_queued_its_worker_is_drained_or_stopped_or_steps_wait(
        service, state):
    rq, fair = service.rq, state.fair
    for n in range(5):
        fair.put(queues.PLAN, 0, "alice", {"run": f"a{n}", "id": f"plan-a{n}"})
    queued = [queues.enqueue_token(rq, queues.PLAN).id for _ in range(3)]

    def next_for(holder: str, worker: str = "w1"):
        return queues.next_piece(rq, fair, queues.PLAN, "alice", holder, cap=0, worker=worker)

    assert fair.take(queues.PLAN, holder="token-plan-h1")[1]["run"] == "a0"
    state.workers.drain("w1")
    assert next_for("token-plan-h1") is None  # a drained worker finishes its piece and takes no more
    state.workers.resume("w1")
    assert fair.take(queues.PLAN, holder="token-plan-h2")[1]["run"] == "a1"
    fair.request_stop("token-plan-h2", "plan-a1", 60)
    assert next_for("token-plan-h2") is None  # a stop is on its way: nothing after the piece it names
    step_token = queues.enqueue_token(rq, queues.STEP).id
    assert fair.take(queues.PLAN, holder="token-plan-h3")[1]["run"] == "a2"
    assert next_for("token-plan-h3") is None  # a step waits: workers serve the steps queue first
    assert token_ids(rq) == queued and fair.waiting(queues.PLAN) == 2 and fair.running() == {}
    for job_id in (*queued, step_token):
        queues.fetch(rq, job_id).delete()
    assert fair.take(queues.PLAN, holder="token-plan-h4")[1]["run"] == "a3"
    assert next_for("token-plan-h4") is None  # no queued token: a4's own token (in flight) takes it
    assert fair.waiting(queues.PLAN) == 1 and fair.running() == {}


def test_one_token_renders_the_runs_queued_behind_it_and_leaves_no_token_behind(service, state, store,
                                                                                start_worker, tmp_path):
    rq = service.rq
    images = [put_image(store, tmp_path, seed=n) for n in range(8)]
    runs = [service.submit(Submission("invert", [digest]), ALICE if n % 2 else BOB)[0]["id"]
            for n, digest in enumerate(images)]
    assert len(token_ids(rq)) == 8
    start_worker()  # one worker, started once all eight wait: its first token goes on to the others
    done = [wait_for_run(state, run_id, timeout=120) for run_id in runs]
    assert all(run["status"] == RunStatus.COMPLETED for run in done), [run.get("error") for run in done]
    held = [s["rq_job"] for run_id in runs for s in state.runs.step_states(run_id).values() if s.get("rq_job")]
    assert len(held) == len(runs)
    assert len(set(held)) < len(runs), held
    deadline = time.monotonic() + 60
    while any(queues.fetch(rq, job_id).get_status() != JobStatus.FINISHED for job_id in set(held)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert token_ids(rq) == []
    left = {key.decode().rsplit(":", 1)[1] for key in rq.scan_iter(match=b"rq:job:token-plan-*")}
    assert left == set(held)  # the tokens taken in their place left no record behind
    assert state.fair.running() == {} and state.fair.waiting(queues.PLAN) == 0
    assert queues.reissue_lost_tokens(rq, state) == {}


def test_a_stop_for_a_piece_a_token_has_finished_does_not_reach_the_next(service, state, store, start_worker,
                                                                         tmp_path):
    from rq.command import send_command

    clip = put_video(store, tmp_path, seconds=6, size="640x360")
    start_worker()
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    step = wait_running(state, run["id"], "dog")
    # A cancel's stop that arrives after its piece ended names that piece, not this one.
    send_command(service.rq, step["worker"], "stop-job", job_id=step["rq_job"], piece="plan-some-earlier-piece")
    done = wait_for_run(state, run["id"], timeout=120)
    assert done["status"] == RunStatus.COMPLETED, done.get("error")
    # The piece it names is stopped: the run's cancel goes through the same command.
    again, _ = service.submit(Submission("dog", [clip], force=True), ALICE)
    wait_running(state, again["id"], "dog")
    assert service.cancel(again["id"], ALICE)["status"] == RunStatus.CANCELLED
    deadline = time.monotonic() + 60
    while state.runs.step_states(again["id"])["dog"]["status"] == StepStatus.RUNNING:
        assert time.monotonic() < deadline, "the cancelled step still runs"
        time.sleep(0.05)
    assert state.runs.step_states(again["id"])["dog"]["status"] == StepStatus.CANCELLED


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
