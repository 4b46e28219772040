"""The worker's spare horse (issue 19): made ahead of time, used once, never outliving its worker.

Real `worker.py` processes on the session's redis-server. That a horse killed mid-render fails
its step (crash isolation) is `test_runs_workers.py::test_a_killed_worker_leaves_the_run_failed_
with_a_reason`, whose horse is such a spare.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from l1web.devtools.processes import stop_process
from l1web.runs.model import RunStatus
from l1web.runs.service import Submission
from tests.helpers import put_image
from tests.test_runs_workers import ALICE, wait_for_run


def spares(worker) -> list[int]:
    """The worker's children that lead a process group of their own: spare or running horses."""
    out = []
    for child in psutil.Process(worker.pid).children():
        try:
            if os.getpgid(child.pid) == child.pid and child.status() != psutil.STATUS_ZOMBIE:
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


def test_an_idle_worker_keeps_one_spare_horse_and_a_job_uses_it_up(service, state, store, start_worker, tmp_path):
    worker = start_worker()
    spare = one_spare(worker)
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    assert not psutil.pid_exists(spare) or psutil.Process(spare).status() == psutil.STATUS_ZOMBIE  # used once
    assert one_spare(worker) != spare  # and the next one is ready


def test_a_spare_killed_while_idle_is_replaced_and_the_next_job_still_runs(service, state, store, start_worker,
                                                                           tmp_path):
    worker = start_worker()
    os.kill(one_spare(worker), signal.SIGKILL)
    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path, seed=2)]), ALICE)
    assert wait_for_run(state, run["id"])["status"] == RunStatus.COMPLETED
    one_spare(worker)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_spare_never_outlives_its_worker(start_worker, how):
    worker = start_worker()
    spare = psutil.Process(one_spare(worker))
    if how == signal.SIGTERM:
        stop_process(worker)
    else:
        worker.kill()
        worker.wait(10)
    gone, alive = psutil.wait_procs([spare], timeout=10)
    assert not alive, "the spare horse outlived its worker"


#: Run in a fresh process by the test below: what a horse does, minus the fork.
HORSE_IMPORTS = """
import sys
from rq import SimpleWorker, Queue
from rq.serializers import JSONSerializer
from l1web.clients import process_clients
from l1web.jobs import queues
from l1web.worker import preload

preload()
before = set(sys.modules)
ctx = process_clients()
queue_list = [Queue(name, connection=ctx.rq_connection, serializer=JSONSerializer) for name in queues.QUEUES]
SimpleWorker(queue_list, connection=ctx.rq_connection, serializer=JSONSerializer).work(burst=True)
print(sorted(set(sys.modules) - before))
"""


def test_a_horse_imports_nothing_the_worker_could_have_preloaded(service, state, store, worker_env, tmp_path):
    """Every horse is a fresh fork of the preloaded worker: a module a trivial run imports, each run
    imports again (l1web.metrics with prometheus_client cost ~40 ms per run before it was preloaded)."""
    import subprocess
    import sys

    run, _ = service.submit(Submission("invert", [put_image(store, tmp_path)]), ALICE)
    done = subprocess.run([sys.executable, "-c", HORSE_IMPORTS], env={**os.environ, **worker_env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert state.runs.get(run["id"])["status"] == RunStatus.COMPLETED, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
