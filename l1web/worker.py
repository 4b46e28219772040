"""The RQ worker process: L1's queues, the JSON serializer, a job id on every log line.

Lost workers. A worker whose horse dies (OOM killer, SIGKILL) fails the step at once through
`horse_killed`. A worker that dies whole (main process and horse) can no longer tell anyone:
its job stays in RQ's StartedJobRegistry until the entry's expiry (renewed by every heartbeat)
passes; then any other worker's maintenance sweep fires the job's failure callback with
`AbandonedJobError`, which fails the step and the run. RQ hard-codes 60 s of grace after a
heartbeat and, on an idle worker, sweeps only when its blocking dequeue times out (about 7 min
by default); `L1Worker` makes both follow the settings (`WORKER_ABANDON_GRACE`,
`WORKER_MAINTENANCE`), so a lost step fails within heartbeat + grace + maintenance seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from l1web import startup
from l1web.clients import process_clients
from l1web.engine import encoding
from l1web.settings import Settings

#: Queues a worker listens on by default, highest priority first.
DEFAULT_QUEUES = ("steps", "runs", "default")


#: Why a step failed when a second SIGTERM (or SIGINT) stopped its worker mid-render.
COLD_SHUTDOWN = "the worker was shut down while rendering this step (cold shutdown: a second stop signal)"


class L1Worker(Worker):
    """RQ's forking worker, with three changes for runs that must not stay "running".

    A configurable abandon grace and a dequeue that wakes up to sweep (lost workers, above); a
    heartbeat that survives a Redis restart; and a cold shutdown (a second stop signal) that
    fails the job it interrupts, with a reason, rather than leaving it "started" until another
    worker's sweep finds it abandoned.
    """

    abandon_grace = 60

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(interval) + self.abandon_grace

    def maintain_heartbeats(self, job, execution) -> None:
        # RQ lets a Redis error here end the whole worker (and orphan the horse mid-render).
        # A Redis restart takes a second: skip this beat and send the next one.
        try:
            super().maintain_heartbeats(job, execution)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.log.warning("Worker %s: heartbeat for job %s failed (%s); retrying at the next one",
                             self.name, job.id, exc)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        # This host's copies of chunks joined elsewhere go even while it is idle (jobs/chunked.py).
        try:
            from l1web.jobs import chunked

            chunked.sweep(process_clients())
        except (redis.RedisError, OSError) as exc:
            self.log.warning("Worker %s: chunk sweep failed (%s)", self.name, exc)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker sweeps only between blocking dequeues: wake up once per maintenance interval.
        return max(1, min(self.worker_ttl - 15, int(self.maintenance_interval)))

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


def preload() -> None:
    """Import the job code and probe the tools once, before any fork.

    RQ forks a work horse per job; whatever the main process has loaded, every horse inherits
    for free. Without this each job would import numpy, scipy and the engine again (seconds)
    and run `ffmpeg -version` for its provenance. Redis clients made here are safe to inherit:
    redis-py opens new connections in a forked child.
    """
    import PIL.Image

    import l1web.engine.effects.apply  # noqa: F401 - imported lazily by the renderers
    from l1web.jobs import runs  # noqa: F401 - the job code every horse runs
    from l1web.runs import provenance

    PIL.Image.init()  # registers every image plugin now rather than in each horse
    process_clients()
    provenance.infrastructure()


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
    encoding.configure(settings.png_encoding)  # before any plan (cache ids) or render (bytes)
    # One line and exit 1, never a traceback, when ffmpeg, a prober or Redis is missing; the first
    # server to start makes the sample assets.
    startup.prepare(settings, "worker", redis_required=True)
    # Opening the store sweeps temp files and work folders a crashed worker left behind.
    clients = process_clients()
    settings, connection = clients.settings, clients.rq_connection
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in args.queues]
    worker = L1Worker(
        queues, connection=connection, serializer=JSONSerializer, name=args.name,
        work_horse_killed_handler=horse_killed,
        job_monitoring_interval=settings.worker_heartbeat, maintenance_interval=settings.worker_maintenance,
    )
    worker.abandon_grace = settings.worker_abandon_grace
    preload()
    # RQ registers the worker, starts its scheduler and only then installs its signal handlers:
    # a stop signal in between would kill the process outright and leave it registered (alive
    # to /readyz) for minutes. Until RQ's handlers replace this one, a stop is a clean exit.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        worker.work(burst=args.burst, with_scheduler=True)
    finally:
        with contextlib.suppress(Exception):  # already done by RQ's teardown after a normal stop
            worker.register_death()


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)
