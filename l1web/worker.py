"""The RQ worker process: L1's queues, the JSON serializer, a job id on every log line.

Lost workers. A worker whose horse dies (OOM killer, SIGKILL) fails the step at once through
`horse_killed`. A worker that dies whole (main process and horse) can no longer tell anyone:
its job stays in RQ's StartedJobRegistry until the entry's expiry (renewed by every heartbeat)
passes; then any other worker's maintenance sweep fires the job's failure callback with
`AbandonedJobError`, which fails the step and the run. RQ hard-codes 60 s of grace after a
heartbeat and, on an idle worker, sweeps only when its blocking dequeue times out (about 7 min
by default); `L1Worker` makes both follow the settings (`WORKER_ABANDON_GRACE`,
`WORKER_MAINTENANCE`), so a lost step fails within heartbeat + grace + maintenance seconds.
The same maintenance puts back fair-share tokens lost on RQ's side (`sweep_tokens`): a waiting
plan or step with no token would otherwise wait for ever.

Horses are made ahead of time and kept. RQ forks a horse per job, and the new process then
opens its own Redis connections and page-faults its way through its copy of the worker's memory:
measured at 15-70 ms before the job's first line runs, and as much again for its exit
(docs/performance.md), more than a small render itself. `L1Worker` forks its horse while it
waits for work, and keeps it: the horse connects to Redis and blocks on a pipe; each job's id
goes down the pipe, the horse runs it exactly as RQ's horse would (`perform_job`), says "over"
on a second pipe and waits for the next, up to `WORKER_HORSE_JOBS` jobs (then it exits and the
worker forks another). A horse runs one job at a time, in a process of its own, so crash
isolation is RQ's: a horse that dies (OOM killer, SIGKILL, a crash in a native library) fails
the job it was running (`horse_killed`), and the next job gets a new horse. The worker waits
for "over" *or* the horse's exit, through a pidfd, never through the pipe alone: a copy of the
pipe's write end (in any process forked meanwhile) could keep the pipe open after the horse died.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import functools
import gc
import json
import logging
import os
import random
import select
import signal
import time
from dataclasses import dataclass

import redis
from rq import Queue, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus, parse_job_id
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import WorkerStatus

from l1web import startup, trace
from l1web.clients import process_clients
from l1web.engine import encoding
from l1web.jobs.queues import QUEUES, TOKEN_ID_PREFIX
from l1web.settings import Settings
from l1web.state import connect

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
    #: Jobs one horse runs before it exits (`WORKER_HORSE_JOBS`); 1 is RQ's fresh horse per job.
    horse_jobs = 1
    #: The worker's horse, forked ahead of time and kept between jobs.
    _horse: _Horse | None = None
    #: Seconds between an idle horse's checks that its worker is still alive.
    SPARE_POLL = 1.0

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(interval) + self.abandon_grace

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """RQ's heartbeat (the worker's `last_heartbeat` and the expiry of its two keys) in one send,
        with what the worker would otherwise ask or write in sends of its own right before or after.

        RQ sends its three commands one by one unless given a pipeline, and between one job and the
        next a worker sets its state to idle twice and beats four times (after the job, in the
        suspension check, before and after its blocking dequeue): 16 round trips. Now each beat is
        one send that also carries a pending "idle" (`set_state`: every idle is followed by a beat),
        reads whether `rq suspend` holds (for the suspension check that follows the beat after a
        job) and whether an admin drained this worker (for the look right after a dequeue, whose
        last act is a beat): 6 round trips, one of them between taking a job and handing it on."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline(transaction=False) as beat:
            if self._idle_unsent:
                beat.hset(self.key, "state", WorkerStatus.IDLE)
            super().heartbeat(timeout, beat)
            beat.exists(WORKERS_SUSPENDED)
            process_clients().state.workers.ask_drained(beat, self.name)
            *_, suspended, drained = beat.execute()
        self._idle_unsent = False
        self._suspension_seen = (bool(suspended), time.monotonic())
        self._drain_seen = bool(drained)

    #: An "idle" state set but not yet written: the next beat carries it.
    _idle_unsent = False
    #: What the last beat read of `rq suspend`, and when; used once, within `SEEN_FRESH` seconds.
    _suspension_seen: tuple[bool, float] | None = None
    SEEN_FRESH = 1.0

    def set_state(self, state: str, pipeline=None) -> None:
        if state == WorkerStatus.IDLE and pipeline is None:
            self._state = state  # written by the beat that follows every idle (RQ's loop and dequeue)
            self._idle_unsent = True
            return
        self._idle_unsent = False
        super().set_state(state, pipeline)

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
        self.sweep_tokens()

    def sweep_tokens(self) -> None:
        """Re-issue fair-share tokens lost on RQ's side (`queues.reissue_lost_tokens`); one worker
        per maintenance interval does it, whoever gets there first."""
        from l1web.jobs import queues

        try:
            ctx = process_clients()
            if ctx.state.fair.claim_sweep(self.maintenance_interval):
                issued = queues.reissue_lost_tokens(ctx.rq_connection, ctx.state)
                if issued:
                    self.log.warning("Worker %s: waiting work had no token on RQ; re-issued %s", self.name, issued)
        except redis.RedisError as exc:
            self.log.warning("Worker %s: token sweep failed (%s)", self.name, exc)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker sweeps only between blocking dequeues: wake up once per maintenance interval.
        return max(1, min(self.worker_ttl - 15, int(self.maintenance_interval)))

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
        """RQ's own (rq/worker/base.py), with a scheduler process that dies with this worker."""
        self.scheduler = L1Scheduler(
            self.queues, connection=self.connection, serializer=self.serializer,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format, log_format=log_format,
        )
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    #: Seconds between stop signals to the scheduler process (`stop_scheduler`), and in all
    #: before it is killed. RQ's scheduler checks for a stop once per second (its interval).
    SCHEDULER_STOP_RESEND, SCHEDULER_STOP_GRACE = 0.5, 10.0

    def stop_scheduler(self) -> None:
        """RQ's stop of its scheduler process (SIGTERM, then wait), with the signal sent again until
        the process is gone, and SIGKILL after `SCHEDULER_STOP_GRACE` seconds.

        RQ sends one SIGTERM and waits for ever. A signal that reaches a just-forked child before
        Python has reset its signal state there is dropped (CPython clears pending signals after a
        fork), and a stop right after the worker started did exactly that: the worker stopped
        before the scheduler it had just forked got going, and then waited on it for ever (CI:
        `worker.terminate()` timed out after 30 s; reproduced twice in 95 stops, by
        `devtools/stress_worker_stop.py`). A killed scheduler's locks lapse as a dead worker's do."""
        process = self.scheduler._process if self.scheduler else None  # noqa: SLF001 - RQ's own handle
        if process is None or not process.pid:
            return
        deadline = time.monotonic() + self.SCHEDULER_STOP_GRACE
        while process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
            process.join(self.SCHEDULER_STOP_RESEND)
        if process.is_alive():
            self.log.warning("Worker %s: scheduler %s did not stop; killing it", self.name, process.pid)
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)
            process.join()

    # Stop signals that cannot act at once -----------------------------------------------------
    #: Whether this worker is registered in Redis (RQ's `register_birth` done).
    registered = False
    #: A stop signal came that the work loop has not yet ended on (see `_shutdown`).
    stop_noted = False

    def register_birth(self) -> None:
        super().register_birth()
        self.registered = True

    def _shutdown(self) -> None:
        """RQ's warm stop, also noted for the work loop when the worker is idle.

        RQ stops an idle worker by raising StopRequested from the signal handler, wherever the main
        thread happens to be. Where Python prints and ignores an exception instead (at-fork hooks:
        this worker forks its horse while idle, and logging's hook runs in the parent after every
        fork) the stop was lost and the worker blocked on the queues until the next maintenance
        (CI: a SIGTERM left the worker running for 30 s). The note ends the loop before it blocks."""
        if self.get_state() != WorkerStatus.BUSY:
            self.stop_noted = True
        super()._shutdown()

    def _end_if_stop_noted(self) -> None:
        if self.stop_noted:
            self.log.info("Worker %s: stopping on a stop signal noted earlier", self.name)
            raise StopRequested

    def check_for_suspension(self, burst: bool) -> None:
        self._end_if_stop_noted()  # the first call inside RQ's work loop
        seen, self._suspension_seen = self._suspension_seen, None
        if seen is not None and not seen[0] and time.monotonic() - seen[1] < self.SEEN_FRESH:
            return  # the beat that RQ's loop sends right before this read it: not suspended
        super().check_for_suspension(burst)

    # Drain: finish the current job, take no more ---------------------------------------------
    #: The state this worker shows (in RQ's record, so /workers and /rq see it) while drained.
    DRAINED = "drained"
    #: Seconds between a drained worker's checks that it was resumed (each one also a heartbeat).
    DRAIN_POLL = 1.0

    #: Whether to look at the drain state before blocking on the queues (at start and after a
    #: give-back); otherwise the one look per job is right after taking it.
    _look_first = True

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        while True:
            if self._look_first:
                if timeout is None and self._drained():
                    return None  # a burst worker that is drained has nothing to do: it ends
                self._wait_while_drained()
                self._look_first = False
            self._ensure_horse()  # while this worker blocks on the queues, its horse gets ready
            self._end_if_stop_noted()  # a stop during the fork (its at-fork hooks) is acted on here
            trace.mark("worker.waiting")
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            trace.mark("worker.dequeued")
            if result is None or not self._drained(seen=self._drain_seen):
                return result
            # Drained before or while it waited on the queues: the job it took goes back to the front.
            job, queue = result
            self._give_back(job, queue)
            self._look_first = True

    #: What the last heartbeat read of the drain state (None: not read since it was last used).
    _drain_seen: bool | None = None

    def _drained(self, seen: bool | None = None) -> bool:
        """Whether an admin drained this worker: `seen` (what the heartbeat just read), else read now."""
        self._drain_seen = None
        if seen is not None:
            return seen
        try:
            return process_clients().state.workers.is_drained(self.name)
        except redis.RedisError as exc:  # Redis restarting: RQ's own dequeue reports and retries
            self.log.warning("Worker %s: could not read its drain state (%s)", self.name, exc)
            return False

    def _wait_while_drained(self) -> None:
        """While an admin has this worker drained: heartbeats and maintenance only, no work.

        A stop signal meanwhile ends the worker as it would an idle one (RQ raises StopRequested)."""
        if not self._drained():
            return
        self.log.info("Worker %s: drained; it takes no work until resumed", self.name)
        self.set_state(self.DRAINED)
        self.procline("Drained")
        while not self._stop_requested and self._drained():
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            time.sleep(self.DRAIN_POLL)
        self.log.info("Worker %s: resumed", self.name)

    def _give_back(self, job, queue) -> None:
        # RQ's dequeue from a single queue moves the id to that queue's intermediate list.
        queue.intermediate_queue.remove(job.id)
        queue.push_job_id(job.id, at_front=True)
        self.log.info("Worker %s: drained; job %s handed back to %s", self.name, job.id, queue.name)

    # A stop meant for one piece --------------------------------------------------------------
    def handle_payload(self, message) -> None:
        """RQ's commands, with one check added to `stop-job` when it names a piece.

        A token job may go on from piece to piece (`jobs/queues.py: next_piece`), so "stop job J"
        could reach a piece J took after the one meant. A cancel's stop names the piece
        (`stop_piece`), and told J first to take no further piece: the horse is killed only while
        the piece J holds is that one."""
        from rq.command import parse_payload

        payload = parse_payload(message)
        piece = payload.get("piece") if payload.get("command") == "stop-job" else None
        if piece and payload.get("job_id") == self.get_current_job_id():
            held = process_clients().state.fair.taken(str(payload["job_id"]))
            if held is None or held[1].get("id") != piece:
                self.log.info("Worker %s: stop of %s for %s ignored: that piece is over", self.name,
                              payload["job_id"], piece)
                return
        super().handle_payload(message)

    # Horses made ahead of time and kept -----------------------------------------------------
    def execute_job(self, job, queue) -> None:
        super().execute_job(job, queue)
        trace.mark("worker.horse_over")

    def perform_job(self, job, queue, execution) -> bool:
        trace.mark("horse.perform")
        try:
            return super().perform_job(job, queue, execution)
        finally:
            trace.mark("horse.finalized")

    def _finalize_success(self, job, queue, execution, return_value) -> None:
        """RQ's success handling in one transaction for a token job (`jobs/queues.py`).

        RQ sends four round trips after a job returns: a heartbeat (so the job stays started
        while its success callback runs), then WATCH of the job's dependents, their read, and
        the transaction. A token has no success callback, no repeats, no webhooks, and nothing
        ever depends on it (its id is made at enqueue and never handed out), so the same writes
        go in one MULTI/EXEC (issue 19: three round trips fewer per job, measured by
        `bench/trace_small_job.py`). Every other job is finalized RQ's way."""
        if not _plain_token(job, return_value):
            return super()._finalize_success(job, queue, execution, return_value)
        from rq.rate_limit import release_slot

        job.ended_at = now()
        job._result = return_value
        job._status = JobStatus.FINISHED
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipeline:  # MULTI/EXEC
            self.increment_successful_job_count(pipeline=pipeline)
            self.increment_total_working_time(job.ended_at - job.started_at, pipeline)
            if result_ttl != 0:
                job._handle_success(result_ttl, pipeline=pipeline, worker_name=self.name, execution_id=execution.id,
                                    execution_started_at=execution.created_at, execution_ended_at=job.ended_at)
            job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            job._status = JobStatus.FINISHED
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.execute()
        release_slot(job)
        self.log.info("Worker %s: %s: Job OK (%s) in %ss", self.name, job.origin, job.id,
                      job.ended_at - job.started_at)

    def prepare_execution(self, job) -> Execution:
        """RQ's execution record, with the bookkeeping RQ leaves to the horse in the same send.

        RQ writes the execution (worker busy, job in the started registry) from the worker, and
        then the horse, once it has the job, sends a second pipeline of its own (RQ's
        `prepare_job_execution`: heartbeats, the job's status "started" with its worker and start
        time, the job's expiry cleared, its id out of the queue's intermediate list). Here both go
        in one send before the hand-off, and the horse, which reads the job after it, skips its
        own (issue 19: one round trip fewer between taking a job and starting it, measured by
        `bench/trace_small_job.py`). Every horse of this worker comes through `_horse_main`."""
        with self.connection.pipeline() as pipeline:
            ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            # What RQ's `prepare_job_execution` sends from the horse, in its order.
            self.heartbeat(ttl, pipeline=pipeline)
            job.heartbeat(now(), ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if len(self.queues) == 1:  # RQ's dequeue from one queue keeps the id in its intermediate list
                pipeline.lrem(self.queues[0].intermediate_queue_key, 1, job.id)
            # The job and its execution as the horse would read them: read here, in the same
            # transaction, and handed down with the job (`fork_work_horse`), so the horse reads nothing.
            pipeline.hgetall(job.key)
            pipeline.hgetall(execution.key)
            *_, job_data, execution_data = pipeline.execute()
        self._handed = (job.id, job_data, execution_data)
        return execution

    #: The job id, its hash and its execution's, read by `prepare_execution`, for the hand-off.
    _handed: tuple[str, dict, dict] | None = None

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        if job.id == self._prepared_job:  # written by the worker with the execution (above)
            self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    #: In a horse, the job whose start the worker already wrote (`prepare_execution`).
    _prepared_job: str | None = None

    def fork_work_horse(self, job, queue) -> None:
        """Hand the job to the waiting horse (a new one if it died meanwhile)."""
        trace.mark("worker.handing_off")
        handed, self._handed = self._handed, None
        read = handed[1:] if handed is not None and handed[0] == job.id else ()  # else the horse reads them
        message = json.dumps([job.id, queue.name, self.execution.id, *(_wire(data) for data in read)])
        for _ in range(2):
            horse = self._ensure_horse()
            try:
                _write_all(horse.jobs, message.encode() + b"\n")
                break
            except OSError:  # it died since the check (EPIPE): collect it, make another
                self._drop_horse(horse)
        else:
            raise RuntimeError("could not hand the job to a work horse")
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        self._horse_pid = horse.pid
        trace.mark("worker.handed_off")
        self.procline(f"Handed job {job.id} to horse {horse.pid} at {time.time()}")

    def wait_for_horse(self):
        """Until the horse says the job is over (it lives on), or until it exits.

        RQ's monitor interrupts the wait for heartbeats (SIGALRM), as it does its `waitpid`. A
        horse that exits without saying "over" is collected and judged by its exit status, as
        RQ judges its own horses; one that exited 0 without a word did not finish the job either.
        """
        horse = self._horse
        if horse is None or horse.pid != self._horse_pid or horse.exited < 0:
            return super().wait_for_horse()  # no pidfd: the horse runs this one job and exits
        ready, _, _ = select.select([horse.reports, horse.exited], [], [])
        said = os.read(horse.reports, 64) if horse.reports in ready else b""
        if said:
            if said.endswith(b"last\n"):  # its last job: it exits now; collected later
                self._forget_horse(horse, exiting=True)
            return horse.pid, os.EX_OK, None
        self._forget_horse(horse)
        pid = status = rusage = None
        with contextlib.suppress(ChildProcessError):
            pid, status, rusage = os.wait4(horse.pid, 0)
        if status == os.EX_OK:
            status = 1 << 8  # exit status 1: the job's own record says whether it finished
        return pid, status, rusage

    def teardown(self) -> None:
        if self._horse is not None:
            self._drop_horse(self._horse)
        self._collect_exiting(wait=True)
        super().teardown()

    def _ensure_horse(self) -> _Horse:
        """The waiting horse, forked now if there is none (or it died)."""
        self._collect_exiting()
        horse = self._horse
        if horse is not None:
            if _alive(horse.pid):
                return horse
            self._forget_horse(horse)
        jobs_read, jobs_write = os.pipe()
        reports_read, reports_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the horse: never returns
            os.close(jobs_write)
            os.close(reports_read)
            self._horse_main(jobs_read, reports_write)
        os.close(jobs_read)
        os.close(reports_write)
        try:
            exited = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (not Linux ≥ 5.3): RQ's way, one job per horse
            exited = -1
        self._horse = _Horse(pid, jobs_write, reports_read, exited)
        return self._horse

    def _forget_horse(self, horse: _Horse, *, exiting: bool = False) -> None:
        """Close the worker's ends of a horse that died or is exiting (`exiting`: collect it later)."""
        if self._horse is horse:
            self._horse = None
        for fd in (horse.jobs, horse.reports, horse.exited):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if exiting:
            self._exiting.append(horse.pid)
        else:
            self._reap(horse.pid)

    def _drop_horse(self, horse: _Horse) -> None:
        """End a horse that holds no job (nothing to lose): SIGKILL, so that it cannot linger."""
        self._forget_horse(horse)
        self._reap(horse.pid, wait=True)

    def _collect_exiting(self, wait: bool = False) -> None:
        exiting = getattr(self, "_exiting", None)
        if exiting is None:
            self._exiting = exiting = []
        for pid in list(exiting):
            try:
                done, _ = os.waitpid(pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                exiting.remove(pid)

    @staticmethod
    def _reap(pid: int, wait: bool = False) -> None:
        with contextlib.suppress(ChildProcessError):
            if wait:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)  # an idle horse holds no job: nothing to lose, and it cannot linger
            os.waitpid(pid, 0 if wait else os.WNOHANG)

    def _horse_main(self, jobs: int, reports: int) -> None:
        """A horse: connect, then run the jobs handed down `jobs` one by one, saying "over" after each."""
        code = 1
        try:
            os.setpgrp()  # as RQ's horse: a process group of its own, so a kill takes its ffmpeg too
            random.seed()
            self.setup_work_horse_signals()  # as RQ's main_work_horse: SIGINT ignored, SIGTERM default
            self._is_horse = True
            self.log = logging.getLogger("rq.worker")
            self._horse = None
            parent = os.getppid()
            try:
                _warm_connections(self)
            except Exception:  # noqa: BLE001 - warming is an optimisation: the job connects anyway
                logging.getLogger(__name__).warning("horse could not warm its connections", exc_info=True)
            limit = self.horse_jobs if hasattr(os, "pidfd_open") else 1
            incoming = _Lines(jobs, parent, self.SPARE_POLL)
            for done in range(1, limit + 1):
                line = incoming.next()
                if line is None:
                    os._exit(0)  # retired, or its worker is gone
                trace.mark("horse.got_job")
                job_id, queue_name, execution_id, *handed = json.loads(line)
                os.environ["RQ_WORKER_ID"] = self.name
                os.environ["RQ_JOB_ID"] = job_id
                job, execution = _restore_job(self, job_id, execution_id, *(_unwire(data) for data in handed))
                queue = next(q for q in self.queues if q.name == queue_name)
                self.execution = execution
                self._prepared_job = job.id
                try:
                    self.perform_job(job, queue, execution)
                except BaseException:  # noqa: BLE001 - as RQ's main_work_horse: exit 1, the worker judges
                    os._exit(1)
                try:
                    os.write(reports, b"last\n" if done == limit else b"over\n")
                except OSError:  # the worker is gone
                    os._exit(0)
            code = 0
        except BaseException:  # noqa: BLE001 - a horse reports through its exit status
            logging.getLogger(__name__).exception("work horse failed outside its jobs")
        os._exit(code)

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


class L1Scheduler(RQScheduler):
    """RQ's scheduler process (notify retries), killed by the kernel the moment its worker dies.

    RQ forks it from the worker, so it holds copies of the worker's Redis sockets, and RQ's
    scheduler never looks at its parent. A SIGKILLed worker (OOM killer) therefore left it running
    for ever, and with it the dead worker's blocking BLPOP on the queues: Redis handed the next job
    pushed there (a fair-share token) to a reader that no longer existed, and the job was lost
    until the token sweep. PR_SET_PDEATHSIG (prctl(2); Python has no binding of its own) closes
    those sockets with the worker; its lock then lapses as a dead worker's does.
    """

    def work(self) -> None:
        parent = os.getppid()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before the signal was set
            os._exit(0)
        super().work()


#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class _Horse:
    """The worker's side of a kept horse: its pid, the pipe ends to hand jobs and hear "over",
    and a pidfd that becomes readable when it exits (-1 without pidfds)."""

    pid: int
    jobs: int
    reports: int
    exited: int


class _Lines:
    """Newline-ended messages from a pipe; `next` is None at its end or once `parent` is gone."""

    def __init__(self, fd: int, parent: int, poll: float) -> None:
        self.fd, self.parent, self.poll, self.buffer = fd, parent, poll, b""

    def next(self) -> bytes | None:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], self.poll)
            if not ready:
                if os.getppid() != self.parent:  # the worker is gone: nobody will hand us a job
                    return None
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def _restore_job(worker: Worker, job_id: str, execution_id: str, job_data: dict | None = None,
                 execution_data: dict | None = None) -> tuple[Job, Execution]:
    """The job and its execution, restored as RQ's `Job.fetch` and `Execution.fetch` restore them,
    from their hashes as the worker read them right after writing the job's start (handed down
    the pipe), or else read now in one round trip (they are two `HGETALL`s)."""
    job = worker.job_class(parse_job_id(job_id), connection=worker.connection, serializer=worker.serializer)
    execution = Execution(id=execution_id, job_id=job.id, connection=worker.connection)
    if job_data is None or execution_data is None:
        with worker.connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(job.key)
            pipe.hgetall(execution.key)
            job_data, execution_data = pipe.execute()
    if not job_data:
        raise NoSuchJobError(f"No such job: {job.key}")
    if not execution_data:
        raise ValueError(f"Execution {execution_id} not found in Redis")
    job.restore(job_data)
    execution.restore(execution_data)
    execution._job = job  # noqa: SLF001 - as RQ's own SpawnWorker rebuilds it
    return job, execution


def _wire(data: dict[bytes, bytes]) -> list[list[str]]:
    """A Redis hash's fields and values (bytes: a job's `data` is zlib-compressed) as JSON can carry them."""
    return [[base64.b64encode(key).decode(), base64.b64encode(value).decode()] for key, value in data.items()]


def _unwire(pairs: list[list[str]]) -> dict[bytes, bytes]:
    return {base64.b64decode(key): base64.b64decode(value) for key, value in pairs}


def _write_all(fd: int, message: bytes) -> None:
    """All of `message` down a pipe (a write interrupted by a signal, RQ's SIGALRM, can be partial)."""
    with memoryview(message) as view:
        while view:
            view = view[os.write(fd, view):]


def _plain_token(job: Job, return_value: object) -> bool:
    """A token job (`jobs/queues.py`) that returned a result as every token does: nothing but the
    writes of its end to make (`L1Worker._finalize_success`)."""
    from rq import Retry

    return (job.id.startswith(TOKEN_ID_PREFIX) and not isinstance(return_value, Retry) and job.success_callback is None
            and job.repeats_left is None and not job.webhooks)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _warm_connections(worker: Worker) -> None:
    """Open this process's Redis connections now, not when its job starts (each costs round trips).

    A failure only means the job connects later, as a freshly forked horse would.
    """
    try:
        ctx = process_clients()
        worker.connection.ping()
        ctx.state.ping()
        ctx.rq_connection.ping()
    except Exception as exc:  # noqa: BLE001 - warming up is an optimisation, never a failure
        logging.getLogger(__name__).warning("spare horse could not connect ahead of its job: %s", exc)


def horse_killed(job, retpid: int, ret_val: int, rusage) -> None:
    """The process rendering a job died (OOM killer, SIGKILL): fail its step or run right away."""
    import os

    from l1web.jobs import runs

    signal_note = f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"status {ret_val}"
    error = runs.WorkHorseKilled(f"the worker process was killed ({signal_note})")
    if job.func_name.endswith("take_work"):
        runs.on_work_failure(job, None, runs.WorkHorseKilled, error, None)
    elif job.func_name.endswith("execute_step"):
        runs.on_step_failure(job, None, runs.WorkHorseKilled, error, None)
    elif job.func_name.endswith("plan_run"):
        runs.on_plan_failure(job, None, runs.WorkHorseKilled, error, None)


#: glibc's `mallopt` parameters (malloc.h), and the values the worker sets (`keep_freed_memory`).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 128 << 20


def keep_freed_memory() -> bool:
    """Let the worker and its horses reuse the memory a render frees instead of returning it.

    By default glibc gives each block above ~128 KiB its own mapping (and, once one is freed,
    returns the free top of the heap past twice that): every render's pixel arrays were fresh
    pages, faulted in one by one. Measured (`bench/trace_small_job.py`, 451×300 PNG invert, p50
    of 30, two runs each): the horse's decode 5.6 ms → 4.6 ms, submit → the run completed 27.0 /
    27.5 ms → 25.8 / 25.8 ms, while the same decode in a tight loop in one process was 14.3-14.5
    ms either way. Blocks up to 32 MiB now come from the heap, and up to 128 MiB of free heap
    top is kept: a horse holds at most that much more than it uses, and a horse is replaced
    after `WORKER_HORSE_JOBS` jobs. glibc's own `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`
    in the environment win; other C libraries (no `mallopt`) are left as they are.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def preload() -> None:
    """Import the job code and probe the tools once, before any fork.

    RQ forks a work horse per job; whatever the main process has loaded, every horse inherits
    for free. Without this each job would import numpy, scipy and the engine again (seconds)
    and run `ffmpeg -version` for its provenance. Redis clients made here are safe to inherit:
    redis-py opens new connections in a forked child.
    """
    import av  # noqa: F401 - chunks are probed in process (ffmpeg.probe_own): 116 ms to import in each horse
    import PIL.Image
    import scipy.signal  # noqa: F401 - audio analysis imports it lazily (the web app never needs it)

    import l1web.engine.effects.apply  # noqa: F401 - imported lazily by the renderers
    import l1web.engine.steps.seek  # noqa: F401 - imported lazily by the video renderers
    import l1web.metrics  # noqa: F401 - every step's end records its timing (prometheus_client: ~40 ms to import)
    from l1web.jobs import runs  # noqa: F401 - the job code every horse runs
    from l1web.runs import provenance

    PIL.Image.init()  # registers every image plugin now rather than in each horse
    datetime.datetime.strptime("2000", "%Y")  # RQ parses its timestamps with it: imports `_strptime` once
    process_clients()
    provenance.infrastructure()
    # Everything loaded so far lives as long as the worker: the collector need never scan it,
    # so a horse does not copy those pages just to update their GC headers (copy-on-write).
    gc.collect()
    gc.freeze()


def _fail_interrupted(worker: Worker, job) -> None:
    from l1web.jobs import runs

    try:
        error = runs.WorkerShutdown(COLD_SHUTDOWN)
        if job.func_name.endswith("take_work"):
            runs.on_work_failure(job, None, runs.WorkerShutdown, error, None)
        elif job.func_name.endswith("execute_step"):
            runs.on_step_failure(job, None, runs.WorkerShutdown, error, None)
        elif job.func_name.endswith("plan_run"):
            runs.on_plan_failure(job, None, runs.WorkerShutdown, error, None)
        queue = Queue(job.origin, connection=worker.connection, serializer=JSONSerializer)
        worker.handle_job_failure(job, queue=queue, exc_string=COLD_SHUTDOWN)
    except Exception:  # noqa: BLE001 - exiting anyway; the abandoned-job sweep is the fallback
        logging.getLogger(__name__).exception("could not fail job %s on cold shutdown", job.id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an L1 render worker.")
    parser.add_argument("queues", nargs="*", default=list(QUEUES))
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
    settings = clients.settings
    connection = connect(settings.redis_url, decode=False)  # the worker's own, as RQ expects
    os.register_at_fork(after_in_child=functools.partial(_drop_inherited_connections, connection))
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in args.queues]
    worker = L1Worker(
        queues, connection=connection, serializer=JSONSerializer, name=args.name,
        work_horse_killed_handler=horse_killed,
        job_monitoring_interval=settings.worker_heartbeat, maintenance_interval=settings.worker_maintenance,
    )
    worker.abandon_grace = settings.worker_abandon_grace
    worker.horse_jobs = settings.worker_horse_jobs
    keep_freed_memory()
    preload()
    # RQ registers the worker, starts its scheduler and only then installs its signal handlers:
    # a stop signal in between would kill the process outright and leave it registered (alive
    # to /readyz) for minutes. Until RQ's handlers replace this one, a stop is a clean exit.
    early = functools.partial(_stop_before_rq_handlers, worker, os.getpid())
    signal.signal(signal.SIGTERM, early)
    signal.signal(signal.SIGINT, early)
    try:
        worker.work(burst=args.burst, with_scheduler=True)
    finally:
        with contextlib.suppress(Exception):  # already done by RQ's teardown after a normal stop
            worker.register_death()


def _drop_inherited_connections(connection: redis.Redis) -> None:
    """In every child the worker forks (horse, RQ's scheduler): close the worker's Redis sockets.

    A child keeps copies of its parent's sockets open. When the worker is SIGKILLed, RQ's
    scheduler process lives on, and its copy kept the worker's connection open at the server
    with a BLPOP pending on it: the next job pushed to the queues (a fair-share token, a notify
    job) went to that dead connection and was lost. redis-py itself only opens new connections
    after a fork; it leaves the old sockets open. Closing a copy in the child (no shutdown: the
    socket is still the parent's) leaves the worker's connection as it was.
    """
    connection.connection_pool.disconnect()  # in a child: drops the parent's connections, closing each copy


def _stop_before_rq_handlers(worker: L1Worker, pid: int, signum, frame) -> None:
    """A stop signal before RQ's handlers are in place: a clean exit either way.

    Before the worker is registered, exit at once (nothing to undo but the `finally` in `main`).
    Once it is, RQ may already have forked its scheduler, a non-daemon multiprocessing child:
    exiting here would make the interpreter wait for it at exit, for ever (the worker hung on a
    SIGTERM sent to its pid alone, as `docker stop` sends it). So the stop is noted, and RQ's work
    loop ends on it as on its own StopRequested: scheduler stopped, worker unregistered.
    A child forked meanwhile (RQ's scheduler, until it installs its own handlers) dies of the
    signal, as it would without this handler: raising there is not enough, since in the child's
    at-fork hooks an exception is printed and ignored (CI: the worker's teardown signalled a
    scheduler that had just been forked; it lived on, and the worker waited for it for ever).
    """
    if os.getpid() != pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if not worker.registered:
        raise SystemExit(0)
    worker.stop_noted = True
