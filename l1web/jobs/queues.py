"""Enqueueing through a few typed helpers that set queue, timeout, TTLs and the JSON serializer.

Plans and steps are not put on RQ queues themselves: each is filed under its run's priority and
owner in the fair-share pool (`state/fair.py`) and an interchangeable token job (`take_work`) goes
on the queue; the worker that takes the token renders whatever the pool says is next.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from l1web.engine.canonical import sha3_json
from l1web.state import lua

if TYPE_CHECKING:
    from l1web.runs.service import RunService
    from l1web.state import StateManager
    from l1web.state.fair import FairShare
    from l1web.store import ContentStore

#: Queue for planning runs (cheap, quick).
RUNS_QUEUE = "runs"
#: Queue for rendering steps (the heavy work).
STEPS_QUEUE = "steps"
#: Every queue L1 uses, highest priority first: workers listen on these by default and /metrics
#: always reports them ("default" is RQ's own, for jobs enqueued without a queue name).
QUEUES = (STEPS_QUEUE, RUNS_QUEUE, "default")
#: Seconds a plan job may take (analysis probes every input).
PLAN_TIMEOUT = 900
#: Seconds a render step may take, far above RQ's 180 s default: long videos render slowly.
STEP_TIMEOUT = 6 * 3600
#: Seconds a finished job's record is kept in RQ (our own records live in `artdag:run:*`).
RESULT_TTL = 24 * 3600
#: Seconds a failed job's record is kept in RQ, for operators' post-mortems.
FAILURE_TTL = 7 * 24 * 3600


def queue(connection: redis.Redis, name: str) -> Queue:
    """RQ's queue `name` on `connection`, made once per connection and name: making one checks
    its serializer against RQ's protocol (a slow `isinstance`), 2 % of a trivial run's job CPU
    when every enqueue made its own (profiled, issue 15). A queue holds no state of its own."""
    key = (id(connection), name)
    found = _QUEUES.get(key)
    if found is not None and found[0] is connection:
        return found[1]
    made = Queue(name, connection=connection, serializer=JSONSerializer)
    if len(_QUEUES) >= MAX_QUEUES_KEPT:  # connections come and go in tests: keep it small
        _QUEUES.clear()
    _QUEUES[key] = (connection, made)
    return made


#: Queues made by `queue`, by (connection's id, name), with the connection itself (an id is only
#: unique while its object lives).
_QUEUES: dict[tuple[int, str], tuple[redis.Redis, Queue]] = {}
MAX_QUEUES_KEPT = 64


#: Kinds of work in the fair-share pool, and the RQ queue each kind's tokens go on.
PLAN, STEP = "plan", "step"
TOKEN_QUEUES = {PLAN: RUNS_QUEUE, STEP: STEPS_QUEUE}
#: Seconds during which a token that finished a piece may take another in a queued token's place
#: (`next_piece`); past them it ends after its current piece.
TOKEN_TURN = 2.0
#: A token's timeout: the longest piece of its kind (a plan may render its run's one step), begun
#: at the end of its turn.
TOKEN_TIMEOUTS = {PLAN: PLAN_TIMEOUT + STEP_TIMEOUT + int(TOKEN_TURN) + 1, STEP: STEP_TIMEOUT + int(TOKEN_TURN) + 1}
#: What the RQ dashboard says a token does (which run is decided when a worker takes it).
TOKEN_DESCRIPTIONS = {PLAN: "plan run (the next one by fair share)", STEP: "render step (the next one by fair share)"}


def enqueue_plan(connection: redis.Redis, run_id: str, attempt: int, *, render_inline: bool = False,
                 filed: bool = False) -> Job:
    """The run's plan; with `render_inline` its job also renders the run's one step. `filed`: the
    piece is already in the pool (a new run's submission files it with the run's record,
    `state/submissions.py`), only its token goes on the queue."""
    from l1web.state.fair import plan_piece

    if filed:
        return enqueue_token(connection, PLAN)
    return file_work(connection, run_id, plan_piece(run_id, attempt, render_inline=render_inline))


def step_job_id(run_id: str, step_id: str, attempt: int, tries: int = 1) -> str:
    """The RQ job id of a step's `tries`-th job in the run's `attempt` (retries and hand-backs: tries > 1)."""
    base = f"step-{run_id[:16]}-{attempt}-{sha3_json(step_id)[:16]}"
    return base if tries <= 1 else f"{base}-t{tries}"


def enqueue_step(connection: redis.Redis, run_id: str, step_id: str, attempt: int, tries: int = 1) -> Job:
    return file_work(connection, run_id, {"kind": STEP, "run": run_id, "step": step_id,
                                          "id": step_job_id(run_id, step_id, attempt, tries)})


def file_work(connection: redis.Redis, run_id: str, piece: dict[str, Any]) -> Job:
    """File a piece of work under its run's owner and priority, and put one token on its queue."""
    from l1web.state.fair import FairShare

    FairShare(connection).file(run_id, piece)
    return enqueue_token(connection, piece["kind"])


#: How every token's RQ job id begins.
TOKEN_ID_PREFIX = "token-"  # noqa: S105 - a job id prefix, not a secret


def token_prefix(kind: str) -> str:
    """How the RQ job ids of `kind`'s tokens begin (the sweep counts them by id alone)."""
    return f"{TOKEN_ID_PREFIX}{kind}-"


def token_commands(connection: redis.Redis, kind: str) -> list[tuple[Any, ...]]:
    """The commands RQ sends to put a token of `kind` on its queue, unsent: a new run's
    submission sends them in the script that writes the run (`state/submissions.py`), only
    when the run is written (issue 19: one round trip fewer per submission)."""
    with connection.pipeline() as pipe:
        _queue_token(connection, kind, pipe)
        return [args for args, _options in pipe.command_stack]


def enqueue_token(connection: redis.Redis, kind: str) -> Job:
    # RQ's enqueue without a pipeline sends two round trips (the queue's name to the set of
    # queues, then the job); given one, it queues both and we send them together (issue 19).
    with connection.pipeline() as pipe:
        job = _queue_token(connection, kind, pipe)
        pipe.execute()
    return job


def _queue_token(connection: redis.Redis, kind: str, pipe: redis.client.Pipeline) -> Job:
    return queue(connection, TOKEN_QUEUES[kind]).enqueue(
            "l1web.jobs.runs.take_work", kind, job_id=token_prefix(kind) + uuid.uuid4().hex,
            job_timeout=TOKEN_TIMEOUTS[kind], result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
            on_failure=Callback("l1web.jobs.runs.on_work_failure"), description=TOKEN_DESCRIPTIONS[kind],
            # A job RQ stops on request (cancelling its run) gets this callback, not on_failure.
            on_stopped=Callback("l1web.jobs.runs.on_work_stopped"), pipeline=pipe,
        )


def next_piece(connection: redis.Redis, fair: FairShare, kind: str, user: str, holder: str, *, cap: int,
               worker: str) -> tuple[str, dict[str, Any]] | None:
    """The piece the token `holder` does next in the place of a token of `kind` still queued, after
    reporting its last piece (of `user`) done; None: it ends (`FairShare.done_and_next`)."""
    from rq.job import Job as RQJob

    job_hole = lua.hole("job")
    own = QUEUES.index(TOKEN_QUEUES[kind])
    # Workers listen on QUEUES in order: a plan's token yields to anything waiting on the steps queue.
    first = queue(connection, QUEUES[own - 1]).key if own > 0 else ""
    return fair.done_and_next(kind, user, holder, cap=cap, token_queue=queue(connection, TOKEN_QUEUES[kind]).key,
                              token_prefix=token_prefix(kind), job_key=RQJob.key_for(job_hole), job_hole=job_hole,
                              worker=worker, first_queue=first)


#: Seconds a token that was asked to stop takes no further piece (far longer than a stop command takes).
STOP_HOLD = 60


def stop_piece(connection: redis.Redis, fair: FairShare, rq_job: str, piece_id: str) -> bool:
    """Stop the RQ job `rq_job` while it renders the piece `piece_id` (its run was cancelled).

    A token may go on to other pieces (`next_piece`), so RQ's plain stop-job could reach a piece
    taken after this one. The token is first told to take no further piece; the stop command names
    the piece, and the worker kills its horse only while that piece is still the one it holds
    (`l1web/worker.py: L1Worker.handle_payload`). False when the job is not running anywhere."""
    from rq.command import send_command

    job = fetch(connection, rq_job)
    if job is None or not job.worker_name:
        return False
    fair.request_stop(rq_job, piece_id, STOP_HOLD)
    send_command(connection, job.worker_name, "stop-job", job_id=rq_job, piece=piece_id)
    return True


#: Seconds between a sweep's two counts: a token a worker has just popped from its queue is
#: briefly in neither the queue nor the started registry, and must not count as lost.
SWEEP_RECOUNT = 0.5


def tokens_out(connection: redis.Redis, kind: str, taken: Callable[[list[str]], list[bool]]) -> int:
    """Tokens of `kind` that will still take a piece: queued (or in RQ's intermediate list),
    scheduled, or started and not yet holding one (`taken` says, per job id, whether it holds one)."""
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    prefix, q = token_prefix(kind), queue(connection, TOKEN_QUEUES[kind])
    waiting = [i for i in (*q.get_job_ids(), *q.intermediate_queue.get_job_ids()) if i.startswith(prefix)]
    # ScheduledJobRegistry's __init__ is unannotated in rq
    scheduled = [i for i in ScheduledJobRegistry(queue=q).get_job_ids(cleanup=False)  # type: ignore[no-untyped-call]
                 if i.startswith(prefix)]
    started = [i for i in StartedJobRegistry(queue=q).get_job_ids(cleanup=False) if i.startswith(prefix)]
    with connection.pipeline(transaction=False) as pipe:  # a queued id whose job is gone is no token
        for job_id in (*waiting, *scheduled):
            pipe.exists(Job.key_for(job_id))
        alive = sum(bool(n) for n in pipe.execute())
    holding = taken(started) if started else []
    return alive + sum(not held for held in holding)


def reissue_lost_tokens(connection: redis.Redis, state: StateManager) -> dict[str, int]:
    """Put a token back on RQ for each waiting piece that has none (see `state/fair.py`), per kind.

    Two counts `SWEEP_RECOUNT` apart, and only what both lack is re-issued, so a token in
    flight between RQ's lists is not doubled; one too many would still be harmless (it takes
    nothing and ends), and a piece is popped from the pool once whatever the number of tokens.
    """
    def deficit(kind: str) -> int:
        return state.fair.waiting(kind) - tokens_out(connection, kind, state.fair.holding)

    first = {kind: deficit(kind) for kind in TOKEN_QUEUES}
    if not any(n > 0 for n in first.values()):
        return {}
    time.sleep(SWEEP_RECOUNT)
    issued = {}
    for kind, before in first.items():
        missing = min(before, deficit(kind)) if before > 0 else 0
        for _ in range(missing):
            enqueue_token(connection, kind)
        if missing > 0:
            issued[kind] = missing
    return issued


#: Seconds one notification attempt's job may take (the POST has its own shorter deadline).
NOTIFY_JOB_TIMEOUT = 120


def enqueue_notify(connection: redis.Redis, run_id: str, attempt: int, intervals: tuple[int, ...]) -> Job:
    """The delivery of a run's end to its notify URL, retried by RQ's scheduler with backoff."""
    from rq import Retry

    retry = Retry(max=len(intervals), interval=list(intervals)) if intervals else None
    return queue(connection, RUNS_QUEUE).enqueue(
        "l1web.jobs.notify.deliver", run_id, attempt,
        job_id=f"notify-{run_id[:16]}-{attempt}", job_timeout=NOTIFY_JOB_TIMEOUT,
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, retry=retry,
        description=f"notify run {run_id[:12]} ended",
    )


def enqueue_ended(connection: redis.Redis, run_id: str) -> Job:
    """A quick job doing what a run's end entails (its notify URL's delivery) for an end decided
    by a web request (a cancel): the worker's settings say where and how often to retry."""
    return queue(connection, RUNS_QUEUE).enqueue(
        "l1web.jobs.notify.ended", run_id, job_timeout=NOTIFY_JOB_TIMEOUT,
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=f"run {run_id[:12]} ended",
    )


def enqueue_advance(connection: redis.Redis, run_id: str) -> Job:
    """A quick job that enqueues a run's ready steps (after a resume or a requeue)."""
    return queue(connection, RUNS_QUEUE).enqueue(
        "l1web.jobs.runs.advance_run", run_id, job_timeout=PLAN_TIMEOUT,
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=f"advance run {run_id[:12]}",
    )


def fetch(connection: redis.Redis, job_id: str) -> Job | None:
    from rq.exceptions import NoSuchJobError

    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def run_service(state: StateManager, store: ContentStore, connection: redis.Redis, *,
                user_max_priority: int = 0) -> RunService:
    """A `RunService` whose plan jobs go on this connection's queue (the one wiring of the two)."""
    from l1web.runs.service import RunService

    return RunService(state, store, connection, functools.partial(enqueue_plan, connection),
                      functools.partial(enqueue_advance, connection), user_max_priority=user_max_priority,
                      enqueue_ended=functools.partial(enqueue_ended, connection),
                      stop_piece=functools.partial(stop_piece, connection, state.fair),
                      token_commands=functools.partial(token_commands, connection))
