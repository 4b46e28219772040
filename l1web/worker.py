"""The RQ worker process: L1's queues, the JSON serializer, a job id on every log line."""

from __future__ import annotations

import argparse
import contextlib
import logging

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore

#: Queues a worker listens on by default, highest priority first.
DEFAULT_QUEUES = ("steps", "runs", "default")


#: Seconds between a busy worker's heartbeats; a dead worker's jobs count as abandoned
#: about a minute after its last one.
JOB_MONITORING_INTERVAL = 5
#: Seconds between a worker's sweeps for jobs abandoned by dead workers (RQ's default is 10 min).
MAINTENANCE_INTERVAL = 30
#: Modules every job needs. RQ runs each job in a fresh fork of the worker: imported here once,
#: before forking, they are shared by every job; imported by the job, each job pays for them
#: again (the engine pulls in scipy: 1-3 s per job on a busy machine, more than a small render).
PRELOAD = ("l1web.jobs.runs",)


def preload() -> None:
    """Import what the jobs import, in the worker itself, so its forks inherit it.

    The provenance facts are cached per process too, and finding them starts subprocesses
    (`ffmpeg -version`, `uname -p`: about 0.15 s); found once here, no completed run pays again.
    """
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from l1web.runs import provenance

    provenance.infrastructure()


def horse_killed(job, retpid: int, ret_val: int, rusage) -> None:
    """The process rendering a job died (OOM killer, SIGKILL): fail its step or run right away."""
    import os

    from l1web.jobs import runs

    signal_note = f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"status {ret_val}"
    error = RuntimeError(f"the worker process was killed ({signal_note})")
    if job.func_name.endswith("execute_step"):
        runs.on_step_failure(job, None, RuntimeError, error, None)
    elif job.func_name.endswith("plan_run"):
        runs.on_plan_failure(job, None, RuntimeError, error, None)


#: Why a step failed when a second SIGTERM (or SIGINT) stopped its worker mid-render.
COLD_SHUTDOWN = "the worker was shut down while rendering this step (cold shutdown: a second stop signal)"


class L1Worker(Worker):
    """RQ's worker, except that a cold shutdown fails the job it interrupts, with a reason.

    On a second stop signal RQ kills the work horse and exits, leaving the job "started" until
    another worker's maintenance finds it abandoned a minute or more later, or never if no other
    worker runs. The run would sit in "running" meanwhile; here it fails at once instead.
    """

    def request_force_stop(self, signum, frame):
        job = None
        if self.horse_pid:
            with contextlib.suppress(Exception):  # Redis down: the abandoned-job sweep covers it
                job = self.get_current_job()
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job is not None:
                _fail_interrupted(self, job)
            raise


def _fail_interrupted(worker: Worker, job) -> None:
    from l1web.jobs import runs

    try:
        error = RuntimeError(COLD_SHUTDOWN)
        if job.func_name.endswith("execute_step"):
            runs.on_step_failure(job, None, RuntimeError, error, None)
        elif job.func_name.endswith("plan_run"):
            runs.on_plan_failure(job, None, RuntimeError, error, None)
        queue = Queue(job.origin, connection=worker.connection, serializer=JSONSerializer)
        worker.handle_job_failure(job, queue=queue, exc_string=COLD_SHUTDOWN)
    except Exception:  # noqa: BLE001 - exiting anyway; the abandoned-job sweep is the fallback
        logging.getLogger(__name__).exception("could not fail job %s on cold shutdown", job.id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an L1 render worker.")
    parser.add_argument("queues", nargs="*", default=list(DEFAULT_QUEUES))
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    preload()
    # Opening the store sweeps temp files and work folders a crashed worker left behind.
    ContentStore(settings.cache_dir, StateManager.from_url(settings.redis_url).cache)
    connection = connect(settings.redis_url, decode=False)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in args.queues]
    worker = L1Worker(
        queues, connection=connection, serializer=JSONSerializer, name=args.name,
        work_horse_killed_handler=horse_killed,
        job_monitoring_interval=JOB_MONITORING_INTERVAL, maintenance_interval=MAINTENANCE_INTERVAL,
    )
    worker.work(burst=args.burst, with_scheduler=True)
