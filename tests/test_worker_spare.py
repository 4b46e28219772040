"""The worker's horse (issue 19): forked ahead of time, kept for WORKER_HORSE_JOBS jobs, never
outliving its worker; a horse killed mid-job fails that job only, and the worker goes on.

Real `worker.py` processes on the session's redis-server. That a horse killed mid-render fails
its step is also `test_runs_workers.py::test_a_killed_worker_leaves_the_run_failed_with_a_reason`
and `test_chunks_workers.py` (a killed chunk costs only that chunk).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from l1web.devtools.processes import stop_process
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from tests.helpers import put_image
from tests.test_runs_workers import ALICE, put_video, wait_for_run, wait_for_workers


def spares(worker) -> list[int]:
    """The worker's children that lead a process group of their own: spare or running horses."""
    out = []
    for child in psutil.Process(worker.pid).children():
        try:
            # A horse is a fork of the worker (not the startup's `ffmpeg -version` probe, which
            # also leads a process group of its own).
            if (os.getpgid(child.pid) == child.pid and child.status() != psutil.STATUS_ZOMBIE
                    and "worker.py" in " ".join(child.cmdline())):
                out.append(child.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return out


def one_spare(worker, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while len(found := spares(worker)) != 1:
        assert time.monotonic() < deadline, f"expected one spare horse, found {found}"
        time.sleep(0.05)
    return found[0]


def test_an_idle_worker_keeps_one_horse_and_jobs_run_in_it_one_after_another(service, state, store,
                                                                             start_worker, tmp_path):
    worker = start_worker()
    horse = one_spare(worker)
    for seed in (1, 2, 3):
        run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=seed)]), ALICE)
        assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    assert one_spare(worker) == horse  # the same process ran all three, and waits for more


def test_a_horse_exits_after_worker_horse_jobs_jobs_and_the_next_is_forked(service, state, store, start_worker,
                                                                           tmp_path):
    worker = start_worker(env={"WORKER_HORSE_JOBS": "1"})  # RQ's way: a fresh process per job
    horses = [one_spare(worker)]
    for seed in (4, 5):
        run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=seed)]), ALICE)
        assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
        deadline = time.monotonic() + 30
        while (now := one_spare(worker)) == horses[-1]:
            assert time.monotonic() < deadline, "the used-up horse was not replaced"
            time.sleep(0.05)
        horses.append(now)
    assert len(set(horses)) == 3
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in horses[:2])


def test_a_horse_killed_mid_job_fails_only_that_step_and_the_next_job_runs(service, state, store, start_worker,
                                                                           tmp_path):
    """SIGKILL of the kept horse while it renders: its step fails (retries off), the worker does
    not hang waiting for a "job over" that never comes, and the next job gets a new horse."""
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    worker = start_worker(env={"STEP_RETRIES": "0"})
    warm, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=6)]), ALICE)
    assert wait_for_run(state, warm["id"])["status"] == RunStatus.COMPLETED  # the horse has run a job
    horse = one_spare(worker)
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    deadline = time.monotonic() + 60
    while state.runs.step_states(run["id"]).get("dog", {}).get("status") != StepStatus.RUNNING:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(0.5)
    assert one_spare(worker) == horse  # the kept horse renders it
    os.kill(horse, signal.SIGKILL)
    failed = wait_for_run(state, run["id"], timeout=60)
    assert failed["status"] == RunStatus.FAILED and "killed" in failed["error"].lower(), failed["error"]
    after, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=7)]), ALICE)
    assert wait_for_run(state, after["id"], timeout=60)["status"] == RunStatus.COMPLETED
    assert one_spare(worker) != horse


def test_a_spare_killed_while_idle_is_replaced_and_the_next_job_still_runs(service, state, store, start_worker,
                                                                           tmp_path):
    worker = start_worker()
    os.kill(one_spare(worker), signal.SIGKILL)
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=2)]), ALICE)
    assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    one_spare(worker)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_spare_never_outlives_its_worker(start_worker, how):
    """Nor does RQ's scheduler process: a forked copy of the worker, it holds the worker's Redis
    sockets, so a SIGKILLed worker's blocking pop stayed open in Redis and swallowed the next job."""
    worker = start_worker()
    spare = psutil.Process(one_spare(worker))
    scheduler = psutil.Process(the_scheduler(worker))
    if how == signal.SIGTERM:
        stop_process(worker)
    else:
        worker.kill()
        worker.wait(10)
    gone, alive = psutil.wait_procs([spare], timeout=10)
    assert not alive, "the spare horse outlived its worker"
    gone, alive = psutil.wait_procs([scheduler], timeout=10)
    assert not alive, "the scheduler process outlived its worker"


def the_scheduler(worker, timeout: float = 30) -> int:
    """The worker's child that is a copy of it but no horse (RQ's scheduler process)."""
    deadline = time.monotonic() + timeout
    while True:
        others = [child.pid for child in psutil.Process(worker.pid).children()
                  if child.pid not in spares(worker) and "worker.py" in " ".join(child.cmdline())
                  and child.status() != psutil.STATUS_ZOMBIE]
        if others:
            return others[0]
        assert time.monotonic() < deadline, "the worker started no scheduler process"
        time.sleep(0.05)


def test_a_sigkilled_workers_children_never_swallow_the_next_job(service, state, store, start_worker, tmp_path):
    """A SIGKILLed worker's children (RQ's scheduler lives on) held copies of its Redis sockets, so
    the server kept its pending BLPOP: the next job pushed went to that dead connection and was lost
    (for a fair-share token, until a maintenance sweep put it back). Children now close their copies."""
    from rq import Worker

    doomed = start_worker(name="doomed", env={"WORKER_MAINTENANCE": "600"})
    wait_for_workers(service.rq, 1)
    deadline = time.monotonic() + 30
    while not any(c.get("cmd") == "blpop" for c in service.rq.client_list()):  # it waits on the queues
        assert time.monotonic() < deadline, "the worker never blocked on its queues"
        time.sleep(0.1)
    doomed.kill()
    doomed.wait(10)
    # The other worker's start-up sweep finds nothing to do; its next one is 10 minutes away.
    start_worker(name="alive", env={"WORKER_MAINTENANCE": "600"})
    deadline = time.monotonic() + 60
    while "alive" not in {w.name for w in Worker.all(connection=service.rq)}:
        assert time.monotonic() < deadline, "the second worker did not register"
        time.sleep(0.1)
    time.sleep(1)  # its maintenance done, blocked on the queues behind any stale BLPOP
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    done = wait_for_run(state, run["id"], timeout=30)
    assert done["status"] == RunStatus.COMPLETED, done.get("error")


#: Run in a fresh process by the test below: what a horse does, minus the fork. It takes the run's
#: plan from the pool through a token on a queue of its own, so that no other process on the test
#: Redis can take it first.
HORSE_IMPORTS = """
import logging
import sys
from rq import SimpleWorker, Queue
from rq.serializers import JSONSerializer
from l1web.clients import process_clients
from l1web.worker import preload

logging.basicConfig(level=logging.INFO)
preload()
before = set(sys.modules)
ctx = process_clients()
probe = Queue("imports-probe", connection=ctx.rq_connection, serializer=JSONSerializer)
SimpleWorker([probe], connection=ctx.rq_connection, serializer=JSONSerializer).work(burst=True)
print(sorted(set(sys.modules) - before))
"""


def test_a_horse_imports_nothing_the_worker_could_have_preloaded(service, state, store, worker_env, tmp_path):
    """Every horse is a fresh fork of the preloaded worker: a module a trivial run imports, each run
    imports again (l1web.metrics with prometheus_client cost ~40 ms per run before it was preloaded)."""
    import subprocess
    import sys

    from l1web.jobs import queues

    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    queues.queue(service.rq, "imports-probe").enqueue("l1web.jobs.runs.take_work", queues.PLAN,
                                                      job_id=queues.token_prefix(queues.PLAN) + "probe")
    done = subprocess.run([sys.executable, "-c", HORSE_IMPORTS], env={**os.environ, **worker_env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert state.runs.get(run["id"])["status"] == RunStatus.COMPLETED, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


FAULTS_OF_REUSE = """
import resource, sys
from l1web.worker import keep_freed_memory
kept = keep_freed_memory()
import numpy as np
def faults(size=8 << 20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(size, np.uint8)  # touched: every page of it is in use
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(kept, *[faults() for _ in range(3)])
"""


@pytest.mark.parametrize("environment", [{}, {"MALLOC_TRIM_THRESHOLD_": "1048576"}], ids=["ours", "the operator's"])
def test_a_worker_reuses_the_memory_a_render_frees(environment):
    """A render's pixel arrays, freed, serve the next render without faulting in fresh pages
    (`worker.keep_freed_memory`: glibc otherwise maps each large block anew); glibc's own
    MALLOC_* settings in the environment are left to win."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FAULTS_OF_REUSE], check=True, capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent), env={**os.environ, **environment}).stdout
    kept, first, *again = out.split()
    assert kept == ("False" if environment else "True")
    if not environment:
        assert int(first) > 100 and all(int(faults) < int(first) // 10 for faults in again), out


def test_a_finished_token_is_recorded_as_rq_records_a_finished_job_in_one_transaction(service, state, store,
                                                                                     start_worker, tmp_path):
    """A token job's end goes in one MULTI/EXEC (`L1Worker._finalize_success`, issue 19): what RQ's
    four round trips wrote is all there: finished, its result kept, out of the started registry,
    counted on the worker; a plain RQ job on the same worker still ends RQ's way."""
    from rq import Queue, Worker
    from rq.job import Job, JobStatus
    from rq.registry import FinishedJobRegistry, StartedJobRegistry
    from rq.serializers import JSONSerializer

    from l1web.jobs import queues

    start_worker(name="w-finish")
    wait_for_workers(service.rq, 1)
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=21)]), ALICE)
    assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    runs_queue = queues.queue(service.rq, queues.TOKEN_QUEUES[queues.PLAN])
    deadline = time.monotonic() + 30
    while not (finished := FinishedJobRegistry(queue=runs_queue).get_job_ids()):
        assert time.monotonic() < deadline, "no token in the finished registry"
        time.sleep(0.05)
    token = Job.fetch(finished[0], connection=service.rq, serializer=JSONSerializer)
    assert token.id.startswith(queues.token_prefix(queues.PLAN))
    assert token.get_status() == JobStatus.FINISHED and token.ended_at and token.ended_at >= token.started_at
    assert token.return_value()["planned"] is True
    assert token.id not in StartedJobRegistry(queue=runs_queue).get_job_ids(cleanup=False)
    assert 0 < service.rq.ttl(token.key) <= queues.RESULT_TTL
    worker = next(w for w in Worker.all(connection=service.rq) if w.name == "w-finish")
    assert worker.successful_job_count >= 1 and worker.total_working_time > 0
    default = Queue(queues.QUEUES[-1], connection=service.rq, serializer=JSONSerializer)
    plain = default.enqueue("os.getpid", result_ttl=600)
    deadline = time.monotonic() + 30
    while plain.get_status(refresh=True) != JobStatus.FINISHED:
        assert time.monotonic() < deadline, f"the plain job is {plain.get_status()}"
        time.sleep(0.05)
    assert isinstance(plain.return_value(), int) and plain.id in FinishedJobRegistry(queue=default).get_job_ids()


def test_a_horse_starts_its_job_without_a_round_trip_of_its_own(service, state, store, start_worker, tmp_path):
    """The worker writes the job's start (RQ's execution and the horse's `prepare_job_execution`)
    in one transaction that also reads the job back, and hands that down with the job (issue 19):
    between taking the job from the pipe and running it, the horse sends nothing to Redis (it
    sent two round trips before). Counted by the trace marks (`l1web/trace.py`) of a real worker;
    the job's record is what RQ's own start writes."""
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    from l1web.jobs import queues

    marks = tmp_path / "trace.log"
    start_worker(name="w-handed", env={"L1_TRACE": str(marks)})
    wait_for_workers(service.rq, 1)
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=22)]), ALICE)
    assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    lines = [line.split() for line in marks.read_text().splitlines()]
    got = [(pid, int(trips)) for _, pid, trips, label in lines if label == "horse.got_job"]
    took = [(pid, int(trips)) for _, pid, trips, label in lines if label == "job.take_work"]
    assert got and len(got) == len(took)
    assert [pid for pid, _ in got] == [pid for pid, _ in took]
    assert [b - a for (_, a), (_, b) in zip(got, took, strict=True)] == [0] * len(got)
    (rq_job,) = {s["rq_job"] for s in state.runs.step_states(run["id"]).values() if s.get("rq_job")}
    token = Job.fetch(rq_job, connection=service.rq, serializer=JSONSerializer)
    assert token.get_status() == JobStatus.FINISHED and token.worker_name == "w-handed"
    assert token.started_at and token.ended_at >= token.started_at and token.last_heartbeat
    runs_queue = queues.queue(service.rq, queues.TOKEN_QUEUES[queues.PLAN])
    assert token.id.encode() not in service.rq.lrange(runs_queue.intermediate_queue_key, 0, -1)


def test_a_one_step_runs_completion_goes_with_its_steps_end(service, state, store, settings, start_worker,
                                                           tmp_path):
    """Issue 19: the run's completion is sent in the step's end round trip (checked in Redis),
    not in one of its own after it; what it records is what the step's end left: the provenance
    is the one built from the steps' states as stored. The first completion after Redis starts
    may go the usual way (the script is loaded by it), so the second run is the one checked."""
    from l1web.runs import provenance

    marks = tmp_path / "trace.log"
    start_worker(name="w-along", env={"L1_TRACE": str(marks)})
    wait_for_workers(service.rq, 1)
    for seed in (23, 24):
        run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=seed)], "along"), ALICE)
        assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    lines = [line.split() for line in marks.read_text().splitlines()]
    last = max(i for i, (*_, label) in enumerate(lines) if label == "step.counted")
    horse = lines[last][1]
    after = [(label, int(trips)) for _, pid, trips, label in lines[last:] if pid == horse]
    assert [label for label, _ in after][:2] == ["step.counted", "finish.completed"]
    assert after[1][1] == after[0][1], "the completion took a round trip of its own"
    before = [label for _, pid, _, label in lines[:last] if pid == horse]
    assert before[-1] == "finish.provenance"  # built before the step's end was sent
    done = state.runs.get(run["id"])
    steps = state.runs.steps(run["id"])
    states = state.runs.step_states(run["id"])
    rebuilt = provenance.build(SimpleNamespace(settings=settings), done, steps, states, done["output_hash"])
    recorded = done["provenance"]
    for field in ("task_id", "output", "inputs", "effects", "recipe", "plan_id", "steps"):
        assert recorded[field] == rebuilt[field], (field, json.dumps(recorded[field], sort_keys=True),
                                                   json.dumps(rebuilt[field], sort_keys=True))
    assert recorded["steps"][-1]["attempts"] and recorded["steps"][-1]["output"] == done["output_hash"]


def test_a_job_restored_from_the_handed_hashes_is_the_job_the_horse_would_read(service):
    """What the worker reads back with a job's start and hands down the pipe (JSON, base64) makes
    the same job and execution as reading them from Redis, which the horse does when nothing was
    handed (`_restore_job`); the record is RQ's start: status, worker, heartbeat, no expiry."""
    from rq import Queue
    from rq.job import JobStatus
    from rq.serializers import JSONSerializer

    from l1web.worker import L1Worker, _restore_job, _unwire, _wire

    queue = Queue("handed", connection=service.rq, serializer=JSONSerializer)
    job = queue.enqueue("os.getpid", job_timeout=30, description="handed down", meta={"k": "v"})
    worker = L1Worker([queue], connection=service.rq, serializer=JSONSerializer, name="w-unit")
    execution = worker.prepare_execution(job)
    handed = worker._handed  # noqa: SLF001
    assert handed is not None and handed[0] == job.id
    wired = json.loads(json.dumps([_wire(data) for data in handed[1:]]))
    given, given_execution = _restore_job(worker, job.id, execution.id, *(_unwire(pairs) for pairs in wired))
    read, read_execution = _restore_job(worker, job.id, execution.id)
    assert given.to_dict() == read.to_dict() and given_execution.serialize() == read_execution.serialize()
    assert given.get_status(refresh=False) == JobStatus.STARTED and given.worker_name == "w-unit"
    assert given.last_heartbeat and given.started_at and given.meta == {"k": "v"}
    assert service.rq.ttl(job.key) == -1  # persisted, as RQ's own start leaves it
    assert given_execution.id == execution.id and job.id in queue.started_job_registry.get_job_ids(cleanup=False)
