"""The worker's folded Redis calls (issue 19) do what the separate calls they replace did.

Real Redis: a result looked up and else the claim taken in one call; a step queued and started
in one call stops at the first stage that does not apply; a run's completion makes its output's
ref and grant in the same call (and writes nothing when the output is gone); a plan's start
answers the run; claims rendering in a process are renewed by one thread and dropped from it
when the render ends.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from l1web.jobs import runs as run_jobs
from l1web.lifecycle import RunEvent, StepEvent
from l1web.state import keys
from l1web.state.cache import ItemMeta
from l1web.status import RunStatus, StepStatus
from tests.helpers import slow_flushes_and_renames

RUN, OUTPUT = "a" * 64, "b" * 64


def new_run(state, status=RunStatus.RUNNING, owner="alice"):
    assert state.runs.create({"id": RUN, "status": status, "created": 1.0, "owner": owner})
    state.runs.init_steps(RUN, [{"step_id": "s", "type": "EFFECT", "inputs": []}],
                          {"s": {"status": StepStatus.PENDING}})


def test_a_result_is_looked_up_and_else_the_claim_taken_in_one_call(state):
    cache_id = "e" * 64
    recorded, token = state.claims.result_or_acquire(cache_id, "job-1")
    assert recorded is None and token and state.claims.holder(cache_id) == token
    assert state.claims.result_or_acquire(cache_id, "job-2") == (None, None)  # held by job-1
    assert state.claims.commit(cache_id, token, OUTPUT)
    assert state.claims.result_or_acquire(cache_id, "job-3") == (OUTPUT, None)
    assert state.claims.holder(cache_id) is None  # a recorded result takes no claim


def test_queue_and_start_in_one_call_applies_both_or_stops_at_the_first_that_does_not(state):
    new_run(state)
    start = {"started": 5.0, "job_id": "plan-1", "worker": "w1"}
    assert state.runs.step_transitions(RUN, "s", [(StepEvent.ENQUEUE, {}), (StepEvent.START, start)]) == 2
    got = state.runs.step_states(RUN)["s"]
    assert got["status"] == StepStatus.RUNNING and got["job_id"] == "plan-1" and got["started"] == 5.0
    # Running now: ENQUEUE (from pending) does not apply, so nothing is written.
    assert state.runs.step_transitions(RUN, "s", [(StepEvent.ENQUEUE, {}), (StepEvent.START, {"worker": "w2"})]) == 0
    assert state.runs.step_states(RUN)["s"]["worker"] == "w1"


def test_a_step_transition_with_counters_sends_them_only_along(state):
    new_run(state)
    state.runs.step_transition(RUN, "s", StepEvent.ENQUEUE)
    state.runs.step_transition(RUN, "s", StepEvent.START)

    def counted(pipe):
        state.cache.incr("cache_misses", pipe=pipe)

    assert state.runs.step_transition_with(RUN, "s", StepEvent.SUCCEED, also=counted, output=OUTPUT)
    assert state.runs.step_states(RUN)["s"]["status"] == StepStatus.COMPLETED
    assert not state.runs.step_transition_with(RUN, "s", StepEvent.SUCCEED, also=counted)  # not running any more
    assert state.cache.stats()["cache_misses"] == 2  # the counters go either way, as before
    state.runs.update_step(RUN, "s", status=StepStatus.RUNNING)
    state.redis.script_flush()  # as after a Redis restart: the transition's script is loaded, sent again alone
    assert state.runs.step_transition_with(RUN, "s", StepEvent.SUCCEED, also=counted)
    assert state.runs.step_states(RUN)["s"]["status"] == StepStatus.COMPLETED
    assert state.cache.stats()["cache_misses"] == 3  # counted once


def test_completing_a_run_refs_and_grants_its_output_in_the_same_call(state):
    new_run(state, owner="bob")
    state.notify.set_user("bob", url="http://example.test/hook")
    assert state.runs.complete(RUN, output=OUTPUT, ref=f"run:{RUN}", owner="bob", output_hash=OUTPUT) == (
        None, "http://example.test/hook")
    assert state.runs.get(RUN)["status"] == RunStatus.RUNNING  # the output is gone: nothing written
    assert not state.cache.refs(OUTPUT)
    state.cache.record(ItemMeta(digest=OUTPUT, size=1, created=1.0, owner="alice"), verified="")
    assert state.runs.complete(RUN, output=OUTPUT, ref=f"run:{RUN}", owner="bob", output_hash=OUTPUT) == (
        True, "http://example.test/hook")  # with the owner's default notification URL
    run = state.runs.get(RUN)
    assert run["status"] == RunStatus.COMPLETED and run["output_hash"] == OUTPUT
    assert state.cache.refs(OUTPUT) == {f"run:{RUN}"}
    assert state.cache.uploaded_by(OUTPUT, "bob")  # reused from alice's: bob's item too now
    assert state.runs.ids_with_status(RunStatus.COMPLETED) == [RUN]
    # Completed already: the status does not change again, the ref is made anyway (as add_ref did).
    assert state.runs.complete(RUN, output=OUTPUT, ref="run:other", owner="", output_hash=OUTPUT) == (False, "")
    assert state.cache.refs(OUTPUT) == {f"run:{RUN}", "run:other"}


def completes_along(state, output=OUTPUT, output_step="s"):
    """`queue_complete_if_settled` sent in a pipeline of its own, as a step's end sends it: its answer."""
    with state.redis.pipeline(transaction=False) as pipe:
        state.runs.queue_complete_if_settled(pipe, RUN, output_step=output_step, output=output, ref=f"run:{RUN}",
                                             owner="alice", output_hash=output, provenance={"task_id": RUN})
        (answer,) = pipe.execute(raise_on_error=False)
    assert not isinstance(answer, Exception), answer
    return state.runs.complete_answer(answer)


def test_a_completion_sent_with_a_steps_end_applies_only_to_a_run_that_end_settled(state):
    # Issue 19: a one-step run's completion goes in its step's end round trip, checked in Redis.
    state.runs.create({"id": RUN, "status": RunStatus.RUNNING, "created": 1.0, "owner": "alice"})
    state.runs.init_steps(RUN, [{"step_id": "src", "type": "SOURCE", "inputs": []},
                                {"step_id": "s", "type": "EFFECT", "inputs": ["src"]}],
                          {"src": {"status": StepStatus.PENDING}, "s": {"status": StepStatus.RUNNING}})
    state.cache.record(ItemMeta(digest=OUTPUT, size=1, created=1.0, owner="alice"), verified="")
    state.redis.script_load(state.runs._complete.script)  # noqa: SLF001 - as any earlier completion loads it

    def nothing_written() -> bool:
        return state.runs.get(RUN)["status"] == RunStatus.RUNNING and not state.cache.refs(OUTPUT)

    assert completes_along(state) == (False, "") and nothing_written()  # neither step is done
    assert state.runs.update_step(RUN, "s", status=StepStatus.COMPLETED, output=OUTPUT)
    assert completes_along(state) == (False, "") and nothing_written()  # its input step is not done
    assert state.runs.update_step(RUN, "src", status=StepStatus.CACHED, output="c" * 64)
    assert completes_along(state, output="d" * 64) == (False, "") and nothing_written()  # another output
    assert completes_along(state, output_step="src") == (False, "") and nothing_written()  # not its output step
    assert completes_along(state) == (True, "")
    run = state.runs.get(RUN)
    assert run["status"] == RunStatus.COMPLETED and run["output_hash"] == OUTPUT and run["provenance"]["task_id"] == RUN
    assert state.cache.refs(OUTPUT) == {f"run:{RUN}"}
    with state.redis.pipeline(transaction=False) as pipe:  # completed already: not again, and no ref made
        state.runs.queue_complete_if_settled(pipe, RUN, output_step="s", output=OUTPUT, ref="run:other", owner="",
                                             output_hash=OUTPUT)
        assert state.runs.complete_answer(pipe.execute()[0]) == (False, "")
    assert state.cache.refs(OUTPUT) == {f"run:{RUN}"}


def test_a_dead_attempts_claim_is_dropped_by_its_holder_id_only(state):
    cache_id = "7" * 64
    token = state.claims.acquire(cache_id, "step-abc-1-t2")
    assert not state.claims.release_held_by(cache_id, "t2")  # a suffix of the holder is not the holder
    assert not state.claims.release_held_by(cache_id, "step-abc-1")
    assert state.claims.holder(cache_id) == token
    assert state.claims.release_held_by(cache_id, "step-abc-1-t2")
    assert state.claims.holder(cache_id) is None
    assert not state.claims.release_held_by(cache_id, "step-abc-1-t2")  # nothing held


def test_a_plan_start_answers_the_run_or_none(state):
    new_run(state, status=RunStatus.PENDING)
    run = state.runs.transition_read(RUN, RunEvent.START, started=7.0)
    assert run is not None and run["status"] == RunStatus.RUNNING and run["started"] == "7.0"
    assert run["owner"] == "alice"
    assert state.runs.transition_read(RUN, RunEvent.START) is None  # running already
    assert state.runs.ids_with_status(RunStatus.RUNNING) == [RUN]


def test_claims_rendering_in_a_process_are_renewed_by_one_thread_until_the_render_ends(state, monkeypatch):
    monkeypatch.setattr(keys, "CLAIM_TTL", 0.3)
    renewer = run_jobs._Renewer()  # noqa: SLF001 - a fresh one, so its thread uses this TTL
    ctx = SimpleNamespace(state=state)
    first = state.claims.acquire("c" * 64, "job-1", ttl=0.3)
    second = state.claims.acquire("d" * 64, "job-2", ttl=0.3)
    with renewer.hold(ctx, "c" * 64, first), renewer.hold(ctx, "d" * 64, second):
        time.sleep(0.5)  # past the claims' own expiry: they are still held, so they were renewed
        assert state.claims.holder("c" * 64) == first and state.claims.holder("d" * 64) == second
        thread = renewer.thread
    assert renewer.held == {}  # the renders ended: nothing left to renew
    with renewer.hold(ctx, "c" * 64, first):
        assert renewer.thread is thread  # one thread per process, kept for the next render


def test_a_render_output_is_flushed_to_disk_before_its_name_is_given(store, tmp_path, monkeypatch):
    """The output's fsync runs in the background while it is hashed and described; the rename
    into the store (the commit point) still comes after it."""
    events = slow_flushes_and_renames(monkeypatch, "fsync_file")
    out = tmp_path / "out.bin"
    out.write_bytes(b"a render output")
    digest = store.put_file(out, source="run:r1")
    assert store.location(digest).read_bytes() == b"a render output"
    assert events.index("flushed") < events.index(f"renamed into {store.location(digest).parent.name}")


def test_writing_a_plans_steps_answers_the_run_as_it_is_right_after(state):
    new_run(state)
    state.runs.set_queue_paused(True)
    run, steps, states, paused = state.runs.init_steps(
        RUN, [{"step_id": "s", "type": "EFFECT", "inputs": []}, {"step_id": "t", "type": "EFFECT", "inputs": ["s"]}],
        {"s": {"status": StepStatus.PENDING}, "t": {"status": StepStatus.PENDING}}, run_fields={"plan_id": "p1"})
    assert run["plan_id"] == "p1" and [s["step_id"] for s in steps] == ["s", "t"] and paused
    assert states == state.runs.step_states(RUN)
    assert (run, steps, states, True) == state.runs.decision_view(RUN)  # the queue's pause flag too


def test_a_step_end_sends_the_commit_before_and_the_read_after_its_transition_in_one_round_trip(state):
    new_run(state)
    state.runs.step_transitions(RUN, "s", [(StepEvent.ENQUEUE, {}), (StepEvent.START, {"worker": "w1"})])
    cache_id = "f" * 64
    _, token = state.claims.result_or_acquire(cache_id, "job-1")

    def before(pipe):
        state.claims.queue_commit(pipe, cache_id, token, OUTPUT)

    def after(pipe):
        state.runs.queue_decision_view(pipe, RUN)

    applied, ahead, behind, resent = state.runs.step_transition_along(RUN, "s", StepEvent.SUCCEED, before=before,
                                                                      after=after, output=OUTPUT)
    assert applied and not resent and state.claims.committed(ahead[0], cache_id, token, OUTPUT)
    _, _, states, paused = state.runs.decision_view_from(behind)
    assert states["s"]["status"] == StepStatus.COMPLETED and states["s"]["output"] == OUTPUT and not paused
    assert state.claims.result_or_acquire(cache_id, "job-2") == (OUTPUT, None)  # recorded, claim dropped
    # After a Redis restart the scripts are gone: the commit is made again from its answer and the
    # transition is sent again alone, after the read, which the caller is told to redo.
    state.runs.update_step(RUN, "s", status=StepStatus.RUNNING)
    other = "0" * 64
    _, token = state.claims.result_or_acquire(other, "job-3")
    state.redis.script_flush()

    def before_other(pipe):
        state.claims.queue_commit(pipe, other, token, OUTPUT)

    applied, ahead, behind, resent = state.runs.step_transition_along(RUN, "s", StepEvent.SUCCEED,
                                                                      before=before_other, after=after)
    assert applied and resent
    assert state.claims.committed(ahead[0], other, token, OUTPUT)
    assert state.runs.decision_view_from(behind)[2]["s"]["status"] == StepStatus.RUNNING  # read before it
    assert state.runs.step_states(RUN)["s"]["status"] == StepStatus.COMPLETED
    assert state.claims.result_or_acquire(other, "job-4") == (OUTPUT, None)


def test_a_watch_finished_into_its_callers_writes_sends_nothing_itself():
    from l1web.engine.watch import StepWatch

    sent = []
    watch = StepWatch(sink=lambda snap, text: sent.append((snap, text)), interval=3600)
    watch.line("first")  # the first line goes out at once
    watch.line("second")
    snapshot, text = watch.finish_into(ok=True)
    assert sent and sent[-1][1] == "first\n" and len(sent) == 1
    assert text == "second\n" and snapshot["state"] == "done" and snapshot["percent"] == 100.0


def test_a_watch_holding_its_first_emission_hands_it_over_once_or_sends_it_when_released():
    from l1web.engine.watch import StepWatch

    sent = []
    held = StepWatch(sink=lambda snap, text: sent.append((snap, text)), hold_first=True)
    held.line("started")
    assert sent == []  # held for the caller's round trip
    snapshot, text = held.take_first()
    assert text == "started\n" and snapshot["state"] == "running"
    assert held.take_first() is None  # once only
    held.release_first()
    assert sent == []  # taken: nothing left to send
    held.line("within the interval")
    assert sent == []  # the interval runs from the handover
    released = StepWatch(sink=lambda snap, text: sent.append((snap, text)), hold_first=True)
    released.line("forced step started")
    released.release_first()  # nobody took it (a forced step, a chunk): it goes out now
    assert [t for _, t in sent] == ["forced step started\n"]
    finished = StepWatch(sink=lambda snap, text: sent.append((snap, text)), hold_first=True)
    finished.line("cached")
    assert finished.finish_into(ok=True)[1] == "cached\n" and finished.take_first() is None


def test_a_steps_first_lines_go_with_its_claim_in_one_round_trip_and_survive_a_script_flush(state, redis_client):
    from functools import partial

    def calls() -> dict[str, int]:
        return {name: stats["calls"] for name, stats in redis_client.info("commandstats").items()}

    cache_id = "f" * 64
    along = partial(state.watch.queue_publish, run_id=RUN, step_id="s", progress={"percent": 0},
                    log_text="step s started\n")
    state.watch.publish(RUN, "other", None, "loads the log script\n")
    state.claims.result_or_acquire("e" * 64, "job-0")  # loads the claim's script (the test may run alone)
    before = calls()
    recorded, token, answers = state.claims.result_or_acquire_along(cache_id, "job-1", along)
    sent = {name: n - before.get(name, 0) for name, n in calls().items() if n != before.get(name, 0)}
    assert recorded is None and token and state.claims.holder(cache_id) == token
    assert not any(isinstance(a, Exception) for a in answers)
    assert sent.get("cmdstat_evalsha") == 2 and "cmdstat_script|exists" not in sent, sent
    assert state.watch.log(RUN, "s") == "step s started\n"
    assert state.watch.progress(RUN, ["s"])["s"]["percent"] == 0
    # After Redis lost its scripts (a restart): the claim is asked again (taken once), and the
    # caller hears that the log was not appended (it sends it again).
    redis_client.script_flush()
    other = "0" * 64
    recorded, token, answers = state.claims.result_or_acquire_along(other, "job-2", along)
    assert recorded is None and token and state.claims.holder(other) == token
    assert any(isinstance(a, Exception) for a in answers)
    assert state.watch.log(RUN, "s") == "step s started\n"


def test_storing_a_new_item_reads_it_under_its_lock_then_records_and_unlocks_in_one_round_trip(state, monkeypatch):
    import threading

    from tests.test_runs_api import RoundTrips

    index, digest = state.cache, "c" * 64
    meta = ItemMeta(digest=digest, size=3, created=1.0, source="test", owner="alice")
    warm = ItemMeta(digest="9" * 64, size=1, created=1.0, source="test")
    index.record_and_release(warm, verified="", lock=index.get_locked(warm.digest)[2])  # scripts loaded
    trips = RoundTrips(monkeypatch)
    known, verified, lock = index.get_locked(digest)
    assert trips.count == 1 and known is None and verified is None
    assert state.redis.get(keys.cache_lock(digest)) == lock.token
    trips.count = 0
    assert index.record_and_release(meta, verified="sig", lock=lock)
    assert trips.count == 1  # with the read: 2 round trips, where read, lock, record and unlock were 4
    assert state.redis.get(keys.cache_lock(digest)) is None and index.get(digest).owner == "alice"
    known, verified, lock = index.get_locked(digest)
    assert known.digest == digest and verified == "sig"
    lock.release()
    # The same key as redis-py's Lock (deleting an item takes that one): each waits for the other.
    held = state.redis.lock(keys.cache_lock(digest), timeout=30, thread_local=False)  # as `index.lock`, releasable
    assert held.acquire()                                                             # from the timer's thread
    threading.Timer(0.3, held.release).start()
    started = time.monotonic()
    _, _, lock = index.get_locked(digest)
    assert time.monotonic() - started >= 0.25
    assert not index.lock(digest).acquire(blocking=False)
    state.redis.script_flush()  # a Redis restart: the record and the unlock are sent again
    assert not index.record_and_release(meta, verified="sig", lock=lock)  # known already
    assert state.redis.get(keys.cache_lock(digest)) is None


def test_a_workers_heartbeat_is_one_round_trip_does_what_rqs_three_did_and_reads_the_drain(state, monkeypatch):
    from rq import Queue
    from rq.exceptions import StopRequested
    from rq.serializers import JSONSerializer
    from rq.suspension import resume, suspend
    from rq.worker import WorkerStatus

    from l1web.worker import L1Worker
    from tests.test_runs_api import RoundTrips

    queue = Queue("heartbeat-test", connection=state.redis, serializer=JSONSerializer)
    worker = L1Worker([queue], connection=state.redis, serializer=JSONSerializer, name="beat-test")
    worker.register_birth()
    try:
        state.redis.persist(worker.key)
        state.redis.hdel(worker.key, "last_heartbeat")
        state.redis.sadd(worker.executions_key, "x")  # RQ expires this set with the worker's key
        trips = RoundTrips(monkeypatch)
        worker.heartbeat(120)
        assert trips.count == 1
        assert 110 < state.redis.ttl(worker.key) <= 120 and 110 < state.redis.ttl(worker.executions_key) <= 120
        assert state.redis.hget(worker.key, "last_heartbeat")
        assert worker._drain_seen is False  # the same send read the drain state
        state.redis.sadd(keys.workers_drained(), "beat-test")
        trips.count = 0
        worker.heartbeat()
        assert trips.count == 1 and worker._drain_seen is True
        assert worker._drained(seen=worker._drain_seen) and worker._drain_seen is None  # used once
        state.redis.srem(keys.workers_drained(), "beat-test")
        # An idle state waits for the beat that follows it; the beat also reads `rq suspend`.
        worker.set_state(WorkerStatus.BUSY)
        trips.count = 0
        worker.set_state(WorkerStatus.IDLE)
        assert trips.count == 0 and worker.get_state() == WorkerStatus.IDLE
        assert state.redis.hget(worker.key, "state") == "busy"
        trips.count = 0
        worker.heartbeat()
        assert trips.count == 1
        assert state.redis.hget(worker.key, "state") == "idle"
        trips.count = 0
        worker.check_for_suspension(burst=True)  # not suspended: the beat's answer, no send
        assert trips.count == 0
        suspend(state.redis)
        worker.heartbeat()
        with pytest.raises(StopRequested):  # suspended: RQ's own check runs (a burst worker stops)
            worker.check_for_suspension(burst=True)
        resume(state.redis)
        worker.heartbeat()
        worker.check_for_suspension(burst=True)
        worker._suspension_seen = (False, time.monotonic() - 2)  # an old answer is not used
        suspend(state.redis)
        with pytest.raises(StopRequested):
            worker.check_for_suspension(burst=True)
        resume(state.redis)
        with state.redis.pipeline() as pipe:  # a caller's own pipeline is used as RQ uses it
            trips.count = 0
            worker.heartbeat(300, pipeline=pipe)
            assert trips.count == 0
            pipe.execute()
        assert state.redis.ttl(worker.key) > 290
    finally:
        worker.register_death()
        state.redis.delete(worker.executions_key)
