"""The jobs that execute a run: plan it, render each step, and advance it as steps finish.

Flow: `plan_run` (one job) analyzes and plans the run's DAG and writes its steps; `advance`
then enqueues every step whose inputs are ready. Each `execute_step` job reuses a recorded
result when there is one, or claims the step's cache id, renders it and records the output;
then it calls `advance` again. Steps and runs change status only by the events of
`l1web/lifecycle.py`, each a compare-and-set in Redis, so workers racing on the same run
enqueue each step once and finish the run once. Failure callbacks
(which RQ also fires for jobs whose worker died) mark the step failed and advance the run, so
a run never stays "running" with nobody working on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis
from rq import Worker, get_current_job
from rq.job import Job

from l1web import lifecycle, trace
from l1web.clients import Clients, process_clients
from l1web.engine import estimate
from l1web.engine.analysis import analyze
from l1web.engine.plan import Step
from l1web.engine.plan import plan as plan_dag
from l1web.engine.steps import run_step
from l1web.engine.watch import Redactor, StepWatch, watching
from l1web.engine.watch import current as watch_current
from l1web.errors import NotFound
from l1web.jobs import chunked, queues
from l1web.jobs import notify as notify_jobs
from l1web.lifecycle import RunEvent, StepEvent
from l1web.recipes.parse import bound_dag
from l1web.runs import provenance
from l1web.runs.model import Run
from l1web.state import StateManager
from l1web.state.runs import DecisionView, Runs
from l1web.status import DONE, RunStatus, StepStatus

log = logging.getLogger(__name__)
#: Logger of the one line per step job (`step_finished`), which grep and log shippers read.
STEPS = logging.getLogger("l1web.steps")

#: Seconds between polls while waiting for another worker's claim on the same step.
CLAIM_POLL = 0.2
#: Folder under CACHE_DIR where steps render before their output enters the store.
WORK_DIR = "work"
#: Longest error text kept on a step or run, in characters.
MAX_ERROR = 2000


def take_work(kind: str) -> dict[str, Any]:
    """A token job: do the piece of work of `kind` the fair-share pool gives out next, then, while
    every worker is busy, the next ones in the place of tokens still queued (`queues.next_piece`).

    Plans and steps are filed in the pool (`state/fair.py`) and their tokens queued
    (`queues.file_work`). The pool records the piece under this job's id as it gives it out
    (one Lua call), so a failure callback (also fired when the worker died) knows which run
    and step it was doing.
    """
    trace.mark("job.take_work")
    ctx = process_clients()
    job = get_current_job()
    holder = job.id if job is not None else ""
    got = ctx.state.fair.take(kind, ctx.settings.user_max_running, holder)
    trace.mark("job.token_taken")
    if got is None:
        if not ctx.state.fair.waiting(kind):
            return {"status": "nothing waiting"}  # a spare token (its piece went with another): it ends
        # Every user with waiting work runs USER_MAX_RUNNING pieces already: try again shortly,
        # with a new token (tokens stay one for one with waiting pieces).
        time.sleep(CAPPED_PAUSE)
        queues.enqueue_token(ctx.rq_connection, kind)
        return {"status": "capped"}
    # Another piece is taken only until this deadline, so a token's job stays within its timeout
    # (`queues.TOKEN_TIMEOUTS` allows for it) and a worker looks at its other queues now and then.
    deadline = time.monotonic() + queues.TOKEN_TURN
    pieces = 0
    while True:
        user, piece = got
        # On an exception the failure callback releases the user's running count (it fires for a
        # dead worker too, where this frame never finishes), so only a normal return releases here.
        if piece["kind"] == queues.PLAN:
            result = plan_run(piece["run"], bool(piece.get("inline")), work_id=piece["id"])
        else:
            result = execute_step(piece["run"], piece["step"], work_id=piece["id"])
        pieces += 1
        if not holder or time.monotonic() >= deadline:
            ctx.state.fair.done(user, holder)
            break
        nxt = queues.next_piece(ctx.rq_connection, ctx.state.fair, kind, user, holder,
                                cap=ctx.settings.user_max_running, worker=_worker_name(job))
        if nxt is None:
            break
        got = nxt
        trace.mark("job.token_next")
    trace.mark("job.token_done")
    return {**result, "pieces": pieces} if pieces > 1 else result


#: Seconds a token waits before queuing itself again when every waiting user is at their cap.
CAPPED_PAUSE = 0.5


def plan_run(run_id: str, render_inline: bool = False, work_id: str | None = None) -> dict[str, Any]:
    """Analyze and plan a run, write its steps, and enqueue the ready ones.

    With `render_inline` (runs with a single render step, whose plan job gets the step's
    timeout too) the ready step is rendered in this job rather than enqueued: one job per
    one-step run instead of two, which halves RQ's share of a quick run.
    """
    ctx = process_clients()
    job = get_current_job()
    jlog = JobLogAdapter(log, {"run": run_id, "job": work_id or (job.id if job else "-")})
    runs = ctx.state.runs
    run = runs.transition_read(run_id, RunEvent.START, started=time.time())
    if run is None:
        jlog.info("run is not pending any more; nothing to plan")
        return {"planned": False}
    trace.mark("plan.started")
    try:
        dag = bound_dag(run["recipe"], run["input_hashes"])  # checked at submission; `plan_dag` validates it
        trace.mark("plan.parsed")
        ctx.remote.ensure_local(run["input_hashes"].values())  # workers on other hosts fetch their inputs
        trace.mark("plan.local")
        analysis = analyze(dag, ctx.store)
        trace.mark("plan.analyzed")
        plan = plan_dag(dag, analysis, chunked.chunking(ctx.settings))
        trace.mark("plan.dag_planned")
        expected = estimate.expect(plan, analysis)  # each step's 100 % and weight in the run's progress
        trace.mark("plan.planned")
    except Exception as exc:
        fail_run(ctx, run_id, f"planning failed: {exc}")
        raise
    steps = [dict(step, order=index, expect=expected[step["step_id"]]) for index, step in enumerate(plan["steps"])]
    # The analysis has just read every input through `path_for` (verified, indexed): asking the
    # store again whether each SOURCE's file is there is a round trip that cannot say no.
    initial = {step["step_id"]: _initial_state(ctx, step, present=analysis.keys()) for step in steps}
    # Nor does the inline render ask again for the inputs the analysis has just verified.
    checked = {digest: ctx.store.location(digest) for digest in analysis}
    trace.mark("plan.initial_states")
    view = runs.init_steps(run_id, steps, initial,  # steps and plan_id written together, the run read after
                           run_fields={"plan_id": plan["plan_id"], "output_step": plan["output"],
                                       "steps_total": len(steps)},
                           first_plan=not run.get("plan_id"))
    trace.mark("plan.init_steps")
    jlog.info("planned %d steps (plan %s)", len(steps), plan["plan_id"][:12])
    trace.mark("plan.steps_written")
    job_id = work_id or (job.id if job else "inline")
    worker = _worker_name(job)
    start = _start_fields(job, job_id, worker)
    kept, (run_now, steps_now, states_now) = _advance(ctx, run_id, keep=1 if render_inline else 0, start=start,
                                                      view=view)
    trace.mark("plan.advanced")
    for step_id in kept:  # queued and started in one call by `_advance`, from the view it decided on
        trace.mark("step.started")
        jlog = JobLogAdapter(log, {"run": run_id, "job": job_id})
        _render_started(ctx, cast(Run, run_now), steps_now, states_now, step_id, job_id=job_id, worker=worker,
                        started_at=start["started"], jlog=jlog, checked=checked)
    return {"planned": True, "plan_id": plan["plan_id"], "steps": len(steps)}


def _start_fields(job: Job | None, job_id: str, worker: str) -> dict[str, Any]:
    """What a step's START records: when, which attempt (`job_id`), RQ's job and the worker."""
    return {"started": time.time(), "job_id": job_id, "rq_job": job.id if job else "", "worker": worker}


def _initial_state(ctx: Clients, step: Step, present: Collection[str] = ()) -> dict[str, Any]:
    """SOURCE steps are their input files: already there (cached) or missing (failed).

    `present`: digests known to be in this host's store this moment (not asked again)."""
    if step["type"] != "SOURCE":
        return {"status": lifecycle.initial(step, False)}
    # On this host, or fetched from L1/IPFS (workers elsewhere).
    status = lifecycle.initial(step, step["cache_id"] in present or ctx.remote.has(step["cache_id"]))
    if status == StepStatus.CACHED:
        return {"status": status, "output": step["cache_id"], "duration": 0}
    return {"status": status, "error": f"input {step['cache_id'][:12]}… is no longer in the cache"}


class WorkHorseKilled(RuntimeError):
    """The process rendering a step died (OOM killer, SIGKILL): an infrastructure failure."""


class WorkerShutdown(RuntimeError):
    """The worker was stopped in the middle of a step (cold shutdown): an infrastructure failure."""


def execute_step(run_id: str, step_id: str, work_id: str | None = None) -> dict[str, Any]:
    """Render one step of a run, or reuse its recorded output; then advance the run.

    `work_id` names this attempt (the piece of work's id, `plan-…` or `step-…`); the RQ job's
    own id when called as a job of its own."""
    ctx = process_clients()
    job = get_current_job()
    job_id = work_id or (job.id if job else "inline")
    worker = _worker_name(job)
    jlog = JobLogAdapter(log, {"run": run_id, "job": job_id})
    runs = ctx.state.runs
    run, steps, states, queue_paused = runs.decision_view(run_id)
    state = states.get(step_id, {})
    early = _before_start(ctx, run, step_id, states, job_id=job_id if job else None, worker=worker, jlog=jlog,
                          queue_paused=queue_paused)
    if early is not None:
        return early
    trace.mark("step.checked")
    start = _start_fields(job, job_id, worker)
    cleared: dict[str, Any] = {"error": ""} if state.get("error") else {}  # the last attempt's reason, while retrying
    if not runs.step_transition(run_id, step_id, StepEvent.START, **start, **cleared):
        return {"status": "not-queued"}
    trace.mark("step.started")
    return _render_started(ctx, cast(Run, run), steps, states, step_id, job_id=job_id, worker=worker,
                           started_at=start["started"], jlog=jlog)


def _render_started(ctx: Clients, run: Run, steps: list[Step], states: dict[str, dict[str, Any]], step_id: str, *,
                    job_id: str, worker: str, started_at: float, jlog: JobLogAdapter,
                    checked: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """Render (or reuse) a step this attempt has moved to running, record it, advance the run.

    `run`, `steps` and `states` are the view its start was decided on (read before the start);
    `checked`: the paths of inputs this job verified a moment ago (the plan's analysis)."""
    run_id = run["id"]
    step = next(s for s in steps if s["step_id"] == step_id)
    # The inputs were final before this step was queued, so this snapshot has their outputs.
    input_digests = cast(list[str], [states[dep].get("output") for dep in step["inputs"]])
    started = time.monotonic()
    watch = step_watch(ctx, run_id, step)
    watch.line(f"step {step_id} ({step['type']}) started on worker job {job_id}")
    try:
        with watching(watch):
            digest, cached, claim = _produce(ctx, run, step, job_id, jlog, inputs=input_digests, steps=steps,
                                             checked=checked)
    except Exception as exc:
        watch.line(f"step {step_id} failed: {_short(exc)}")
        watch.finish(ok=False)
        jlog.warning("step %s failed: %s", step_id, _short(exc))
        step_finished(ctx.state, run_id, job_id, step, outcome=StepStatus.FAILED,
                      seconds=time.monotonic() - started, worker=worker)
        attempt_failed(ctx, run_id, step_id, job_id=job_id, worker=worker, error_type=type(exc).__name__,
                       reason=_short(exc),
                       error_text=with_log_excerpt(_short(exc), ctx.state.watch.log(run_id, step_id)))
        raise
    return _step_done(ctx, run, step, steps, states, digest=digest, cached=cached, watch=watch, worker=worker,
                      job_id=job_id, started_at=started_at, started=started, jlog=jlog, claim=claim)


def _before_start(ctx: Clients, run: Run | None, step_id: str, states: dict[str, dict[str, Any]], *, job_id: str | None,
                  worker: str, jlog: JobLogAdapter, queue_paused: bool) -> dict[str, Any] | None:
    """Why this job does not render the step after all (its answer), or None to go on."""
    runs, run_id, state = ctx.state.runs, run["id"] if run else "", states.get(step_id, {})
    if run is None or run["status"] not in (RunStatus.RUNNING, RunStatus.PAUSED):
        if run is not None:
            runs.step_transition(run_id, step_id, StepEvent.SKIP, error="run is no longer running")
        return {"status": "skipped"}
    if job_id and state.get("queued_job") not in (None, job_id):
        return {"status": "superseded"}  # an older job for this step; a newer one is queued
    if run["status"] == RunStatus.PAUSED or queue_paused:
        # Back to waiting: resuming the run (or the queue) enqueues it again, as a new job.
        runs.step_transition(run_id, step_id, StepEvent.DEFER, tries=int(state.get("tries") or 1) + 1)
        return {"status": "deferred"}
    where = _placement(ctx, worker, state, states)
    if where == lifecycle.Placement.ELSEWHERE:
        return _hand_back(ctx, run, step_id, state, jlog)
    if where == lifecycle.Placement.NOWHERE:
        last = (state.get("attempts") or [{}])[-1].get("reason")
        runs.step_transition(run_id, step_id, StepEvent.FAIL, finished=time.time(),
                             error=f"every live worker failed {ctx.settings.worker_blocklist_after} or more steps "
                                   "of this run (blocklisted); none may take it"
                                   + (f"; the last attempt failed: {last}" if last else ""))
        advance(ctx, run_id)
        return {"status": "failed"}
    return None


def _step_done(ctx: Clients, run: Run, step: Step, steps: list[Step], states: Mapping[str, dict[str, Any]], *,
               digest: str, cached: bool, watch: StepWatch, worker: str, job_id: str, started_at: float,
               started: float, jlog: JobLogAdapter, claim: str | None = None) -> dict[str, Any]:
    """Record a step's output (rendered or reused) and advance its run.

    `claim`: the token of the claim this job rendered under, committed here (the result recorded
    and the claim dropped). The commit, the watch's last snapshot and log, the step's transition,
    its counters and the read `advance` decides from go in one round trip, in that order (issue 19).
    `run` and `states`: the view the step's start was decided on. When this end leaves the run
    completed with its output (the last step, every other one done: a one-step run's only
    render), the run's completion goes in that round trip too, checked where it is applied
    (`Runs.queue_complete_if_settled`); if the check fails nothing of it is written and the run
    is advanced from the view as before."""
    run_id, runs, step_id, cache_id = run["id"], ctx.state.runs, step["step_id"], step["cache_id"]
    try:
        if chunked.is_join(step):  # joined: the chunks were temporary (a failed join drops them in attempt_failed)
            chunked.remove_chunks(ctx, steps, step, runs.step_states(run_id))
        event = StepEvent.REUSE if cached else StepEvent.SUCCEED
        status = lifecycle.target(event)
        watch.line(f"step {step_id} {status}: output {digest}")
        snapshot, log_text = watch.finish_into(ok=True)
    except BaseException:
        if claim:
            ctx.state.claims.release(cache_id, claim)
        raise
    finished = time.time()
    seconds = time.monotonic() - started
    attempt = _attempt(worker, job_id, started_at, finished, status)
    published = [0]
    # The run's provenance as this end leaves it, if it leaves the run completed (else None).
    record = _completing_provenance(ctx, run, steps, states, step_id=step_id, end={
        "status": status, "output": digest, "duration": round(seconds, 3), "attempt": attempt})

    def before(pipe: redis.client.Pipeline) -> None:
        if claim:
            ctx.state.claims.queue_commit(pipe, cache_id, claim, digest)
        published[0] = ctx.state.watch.queue_publish(pipe, run_id, step_id, snapshot, log_text)

    def after(pipe: redis.client.Pipeline) -> None:
        ctx.state.cache.incr("cache_hits" if cached else "cache_misses", pipe=pipe)
        step_finished(ctx.state, run_id, job_id, step, outcome=status, seconds=seconds, worker=worker, pipe=pipe)
        if record is not None:
            runs.queue_complete_if_settled(pipe, run_id, output_step=step_id, output=digest, ref=f"run:{run_id}",
                                           owner=run.get("owner") or "", output_hash=digest, finished=time.time(),
                                           provenance=record)
        runs.queue_decision_view(pipe, run_id)

    _, ahead, behind, resent = runs.step_transition_along(
        run_id, step_id, event, before=before, after=after, output=digest, finished=finished,
        duration=round(seconds, 3), attempt=attempt)
    trace.mark("step.counted")
    if record is not None and not resent:  # resent: the completion went before the step's end, and did nothing
        _completed_along(ctx, run, behind[-5])
    if claim:
        try:
            if not ctx.state.claims.committed(ahead[0], cache_id, claim, digest):
                jlog.warning("claim on %s lapsed while rendering; result kept but not recorded", cache_id[:12])
        except redis.RedisError as exc:  # the step is recorded already: only the result's reuse is lost
            jlog.warning("result of %s not recorded: %s", cache_id[:12], exc)
    if any(isinstance(answer, redis.exceptions.NoScriptError) for answer in ahead[len(ahead) - published[0]:]):
        ctx.state.watch.publish(run_id, step_id, snapshot, log_text)  # after a Redis restart: the log again
    view = behind[-4:]
    jlog.info("step %s %s → %s", step_id, status, digest[:12])
    if resent or any(isinstance(answer, Exception) for answer in view):
        advance(ctx, run_id)  # the view was read before the transition was sent again: read it anew
    else:
        _advance(ctx, run_id, view=runs.decision_view_from(view))
    trace.mark("step.advanced")
    _sweep_chunks(ctx, step)
    trace.mark("step.swept")
    return {"status": str(status), "output": digest}


#: Seconds between a process's sweeps for chunks joined elsewhere after its steps (chunk and
#: join steps sweep every time; an idle worker's maintenance sweeps too).
CHUNK_SWEEP_EVERY = 5.0
_last_chunk_sweep = float("-inf")


def _sweep_chunks(ctx: Clients, step: Step) -> None:
    """Delete this host's copies of chunks joined elsewhere (`chunked.sweep`): after a chunk or
    a join, and otherwise at most every `CHUNK_SWEEP_EVERY` seconds, not after every small step
    (a round trip each; issue 19)."""
    global _last_chunk_sweep
    now = time.monotonic()
    if chunked.is_chunk(step) or chunked.is_join(step) or now - _last_chunk_sweep >= CHUNK_SWEEP_EVERY:
        _last_chunk_sweep = now
        chunked.sweep(ctx)


#: Seconds a worker waits after handing a step back, so that another worker takes it first.
HAND_BACK_PAUSE = 0.5
#: Hand-backs of one step to prefer another worker before this one takes it anyway.
MAX_PREFERENCE_HAND_BACKS = 20


def _worker_name(job: Job | None) -> str:
    return (getattr(job, "worker_name", None) or "") if job else ""


def _attempt(worker: str, job_id: str, started: float | None, finished: float, outcome: str, *,
             reason: str = "", cause: str = "") -> dict[str, Any]:
    """One attempt of a step, as kept on the step and in provenance.

    Times to 0.1 ms: Redis's Lua JSON keeps 14 significant digits, so that is what the step's
    stored state holds, and a provenance built before the store (`_completing_provenance`)
    holds the same."""
    record = {"worker": worker, "job_id": job_id, "started": None if started is None else round(started, 4),
              "finished": round(finished, 4), "outcome": outcome}
    if reason:
        record.update(reason=reason[:MAX_ERROR], cause=cause)
    return record


def _placement(ctx: Clients, me: str, state: dict[str, Any], states: dict[str, dict[str, Any]]) -> lifecycle.Placement:
    """Where this step should render: here, on another worker (a retry), or nowhere (blocklisted)."""
    avoid = {a.get("worker") for a in state.get("attempts", []) if a.get("outcome") == StepStatus.FAILED}
    blocked = lifecycle.blocklisted([{**a, "step": sid} for sid, s in states.items() for a in s.get("attempts", [])],
                                    ctx.settings.worker_blocklist_after)
    if not me or (me not in avoid and me not in blocked):
        return lifecycle.Placement.HERE  # the usual case: no need to ask RQ who is alive
    if me not in blocked and int(state.get("hand_backs") or 0) >= MAX_PREFERENCE_HAND_BACKS:
        return lifecycle.Placement.HERE  # the others stayed busy: a preference, not a rule
    alive = [w.name for w in Worker.all(connection=ctx.rq_connection)]
    return lifecycle.placement(me, avoid, blocked, alive)


def _hand_back(ctx: Clients, run: Run, step_id: str, state: dict[str, Any], jlog: JobLogAdapter) -> dict[str, Any]:
    """Put the step back on its queue as a new job for another worker, and pause a moment so
    that an idle one takes it rather than this one again."""
    attempt, tries = int(run.get("attempt") or 1), int(state.get("tries") or 1) + 1
    job_id = queues.step_job_id(run["id"], step_id, attempt, tries)
    if ctx.state.runs.update_step(run["id"], step_id, expected=[StepStatus.QUEUED, StepStatus.RETRYING],
                                  tries=tries, queued_job=job_id,
                                  hand_backs=int(state.get("hand_backs") or 0) + 1):
        queues.enqueue_step(ctx.rq_connection, run["id"], step_id, attempt, tries)
        jlog.info("step %s handed back for another worker", step_id)
    time.sleep(HAND_BACK_PAUSE)
    return {"status": "handed-back"}


def attempt_failed(ctx: Clients, run_id: str, step_id: str, *, job_id: str, worker: str,
                   error_type: str, reason: str, error_text: str = "") -> None:
    """An attempt of a step failed: queue another (infrastructure failure with retries left,
    preferably on another worker) or fail the step for good; then advance the run.

    `reason` is what the attempt record keeps and what the failure is classified by;
    `error_text` (the reason and the end of the step's log) is the step's error when it fails."""
    runs = ctx.state.runs
    run = runs.get(run_id)
    state = runs.step_states(run_id).get(step_id, {})
    now = time.time()
    worker = worker or state.get("worker", "")  # a killed horse's job may not name its worker
    cause = lifecycle.classify(error_type, reason)
    # A killed attempt still holds its render claim: dropped, so the retry need not wait for it to lapse.
    step = next((s for s in runs.steps(run_id) if s["step_id"] == step_id), None)
    if step is not None and step.get("cache_id"):
        ctx.state.claims.release_held_by(step["cache_id"], job_id)
    number = len(state.get("attempts", [])) + 1
    event = lifecycle.retry_event(cause, number, ctx.settings.step_retries)
    record = _attempt(worker, job_id, state.get("started"), now, StepStatus.FAILED, reason=reason, cause=cause)
    duration = round(now - float(state["started"]), 3) if state.get("started") else None
    if run is not None and run.get("status") == RunStatus.CANCELLED:  # stopped because the run was
        runs.step_transition(run_id, step_id, StepEvent.CANCEL, attempt={**record, "outcome": StepStatus.CANCELLED},
                             error="run cancelled", finished=now, duration=duration)
        _drop_chunks_of_join(ctx, run_id, step_id)
        return
    if event == StepEvent.RETRY and run is not None:
        attempt, tries = int(run.get("attempt") or 1), int(state.get("tries") or 1) + 1
        next_job = queues.step_job_id(run_id, step_id, attempt, tries)
        if runs.step_transition(run_id, step_id, StepEvent.RETRY, attempt=record, tries=tries,
                                queued_job=next_job, finished=now, duration=duration,
                                error=f"attempt {number} failed: {reason}; retrying"):
            queues.enqueue_step(ctx.rq_connection, run_id, step_id, attempt, tries)
            log.warning("[run %s] step %s: attempt %d failed (%s); retrying", run_id[:12], step_id, number, reason)
        return
    runs.step_transition(run_id, step_id, StepEvent.FAIL, attempt=record, error=error_text or reason,
                         finished=now, duration=duration)
    _drop_chunks_of_join(ctx, run_id, step_id)
    advance(ctx, run_id)


def _drop_chunks_of_join(ctx: Clients, run_id: str, step_id: str) -> None:
    """A join that ended without joining (failed for good, cancelled): its chunks were temporary."""
    _, steps, states = ctx.state.runs.snapshot(run_id)
    step = next((s for s in steps if s["step_id"] == step_id), None)
    if step is not None and chunked.is_join(step):
        chunked.remove_chunks(ctx, steps, step, states)


def step_watch(ctx: Clients, run_id: str, step: Step) -> StepWatch:
    """The watch a step renders under: progress and log go to `state.watch` (one pipelined
    write at most every `engine.watch.INTERVAL` seconds), local paths shortened, secrets hidden."""
    expect = step.get("expect") or {}
    cache_dir = ctx.settings.cache_dir
    redact = Redactor({str(cache_dir / WORK_DIR): "<work>", str(cache_dir): "<cache>"},
                      secrets=[ctx.settings.worker_token, ctx.settings.secret_key])
    step_id = step["step_id"]
    # The watch writes straight to the state manager (no wrapper here for it to call back into).
    return StepWatch(seconds=expect.get("seconds"), frames=expect.get("frames"),
                     sink=partial(ctx.state.watch.publish, run_id, step_id),
                     preview_sink=partial(ctx.state.watch.publish_preview, run_id, step_id), redact=redact,
                     hold_first=True)  # sent with the step's claim (`_produce`)


#: Lines of a failed step's log kept in its error, and characters of each.
LOG_EXCERPT_LINES, LOG_EXCERPT_WIDTH = 16, 160


def with_log_excerpt(error: str, log_text: str | None) -> str:
    """A failed step's error followed by the last lines of its log (what ffmpeg printed)."""
    if not log_text:
        return error
    lines = log_text.rstrip("\n").splitlines()[:-1]  # the last line repeats the error itself
    # Deeply indented lines are ffmpeg's stream metadata: kept in the log, left out of the error.
    lines = [ln for ln in lines if not ln.startswith("    ") and ln.strip()]
    clipped = [ln if len(ln) <= LOG_EXCERPT_WIDTH else ln[: LOG_EXCERPT_WIDTH - 1] + "…"
               for ln in lines[-LOG_EXCERPT_LINES:]]
    excerpt = "\n".join(clipped)
    if not excerpt.strip():
        return error
    room = MAX_ERROR - len(excerpt) - 30
    return f"{error[:max(room, 300)]}\n--- log (last lines) ---\n{excerpt}"[:MAX_ERROR]


def _produce(ctx: Clients, run: Run, step: Step, holder: str, jlog: JobLogAdapter, *, inputs: list[str],
             steps: Sequence[Step] = (), checked: Mapping[str, Path] | None = None) -> tuple[str, bool, str | None]:
    """The step's output digest, whether it was reused rather than rendered here, and the token
    of the claim it was rendered under (to commit), or None."""
    cache_id = step["cache_id"]
    force = run.get("force") == "1"
    deadline = time.monotonic() + queues.STEP_TIMEOUT
    waiting = False
    whole = chunked.joined_whole(list(steps), step) if chunked.is_chunk(step) else None
    watch = watch_current()
    while True:
        token = None
        if not force and whole is None:
            # The result looked up and, when there is none, the claim taken: one round trip,
            # which also carries the step's first progress and log lines (held until now).
            first = watch.take_first() if watch is not None else None
            if first is None:
                recorded, token = ctx.state.claims.result_or_acquire(cache_id, holder)
            else:
                along = partial(ctx.state.watch.queue_publish, run_id=run["id"], step_id=step["step_id"],
                                progress=first[0], log_text=first[1])
                recorded, token, answers = ctx.state.claims.result_or_acquire_along(cache_id, holder, along)
                if any(isinstance(answer, redis.exceptions.NoScriptError) for answer in answers):
                    ctx.state.watch.publish(run["id"], step["step_id"], *first)  # after a Redis restart: again
                elif any(isinstance(answer, Exception) for answer in answers):  # never fails the render
                    jlog.warning("could not report step %s's start: %s", step["step_id"],
                                 next(a for a in answers if isinstance(a, Exception)))
            if recorded and ctx.remote.has(recorded):
                return recorded, True, None
            if (found := ctx.remote.peer_result(cache_id)):  # a peer L1 rendered it (IPNS sync)
                if token:
                    ctx.state.claims.release(cache_id, token)
                return found, True, None
        elif not force:
            found = _recorded(ctx, cache_id)
            if found:
                return found, True, None
            if whole is not None and (found := _recorded(ctx, whole["cache_id"])):
                return found, True, None  # the joined whole exists: this chunk's frames are in it
        trace.mark("step.looked_up")
        if watch is not None:
            watch.release_first()  # forced or a chunk: not sent with a lookup above
        if token is None:
            token = ctx.state.claims.acquire(cache_id, holder)
        if token:
            trace.mark("step.claimed")
            break
        if not waiting:
            waiting = True
            step_log_line(f"another worker renders cache id {cache_id[:12]}…; waiting for its result")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited too long for another worker rendering {cache_id[:12]}")
        time.sleep(CLAIM_POLL)  # someone else renders it: wait for their result or their claim to lapse
    step_log_line(f"rendering cache id {cache_id[:12]}… from {len(inputs)} input(s)")
    try:
        with _renewing(ctx, cache_id, token):
            digest = _render(ctx, run, step, inputs, checked or {})
    except BaseException:
        ctx.state.claims.release(cache_id, token)
        raise
    return digest, False, token  # the claim is committed with the step's end (`_step_done`)


def _recorded(ctx: Clients, cache_id: str) -> str | None:
    digest = ctx.state.results.get_result(cache_id)
    if digest and ctx.remote.has(digest):
        return digest
    return ctx.remote.peer_result(cache_id)  # a peer L1 rendered it (IPNS sync): fetched and verified


def _render(ctx: Clients, run: Run, step: Step, inputs: list[str], checked: Mapping[str, Path]) -> str:
    ctx.remote.ensure_local(inputs)
    input_paths = [checked[digest] if digest in checked else ctx.store.path_for(digest) for digest in inputs]
    trace.mark("render.inputs_checked")
    # Renders happen on the cache's filesystem so the output moves into the store by rename.
    work_root = ctx.settings.cache_dir / WORK_DIR
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="step-", dir=work_root))
    try:
        out = run_step(step, input_paths, work, timeout=ctx.settings.step_timeout)
        trace.mark("render.done")
        if chunked.is_chunk(step):  # temporary, nobody's media: removed once joined
            digest = ctx.store.put_file(out, source=f"{chunked.SOURCE_PREFIX}{run['id']}")
            ctx.state.removed_chunks.discard(digest)
            ctx.remote.share(digest, None)
            return digest
        digest = ctx.store.put_file(out, source=f"run:{run['id']}", owner=run.get("owner") or None)
        ctx.remote.share(digest, run.get("owner"))  # a worker on another host sends it to the L1 server
        trace.mark("render.stored")
        return digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def step_log_line(text: str) -> None:
    """A worker line for the log of the step rendering in this context, if any."""
    current = watch_current()
    if current is not None:
        current.line(text)


class _Renewer:
    """Renews the claims of the steps rendering in this process, from one background thread.

    A thread per step cost more than a small step's whole render path (starting it took ~1-2 ms
    on a busy 2-core machine; issue 19). One thread per process, started with the first claim,
    renews every held claim each `CLAIM_TTL / 3` seconds: a claim taken just after a round waits
    at most that long for its first renewal, as with its own thread. A forked child (a kept work
    horse) has no copy of its parent's thread: it starts its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[tuple[str, str], Clients] = {}
        self.thread: threading.Thread | None = None

    def hold(self, ctx: Clients, cache_id: str, token: str) -> _Held:
        with self.lock:
            self.held[(cache_id, token)] = ctx
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="claim-renewer", daemon=True)
                self.thread.start()
        return _Held(self, (cache_id, token))

    def release(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.held.pop(key, None)

    def _loop(self) -> None:
        from l1web.state.keys import CLAIM_TTL

        while True:
            time.sleep(CLAIM_TTL / 3)
            with self.lock:
                held = list(self.held.items())
            for (cache_id, token), ctx in held:
                try:
                    if not ctx.state.claims.renew(cache_id, token):
                        self.release((cache_id, token))  # lapsed and taken over: its result is not recorded
                except redis.RedisError as exc:  # Redis restarting: keep rendering, renew next time
                    log.warning("could not renew the claim on %s: %s", cache_id[:12], exc)


class _Held:
    """A claim renewed while the `with` block runs."""

    def __init__(self, renewer: _Renewer, key: tuple[str, str]) -> None:
        self.renewer, self.key = renewer, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.renewer.release(self.key)


_RENEWER = _Renewer()


def _renewer_after_fork() -> None:
    """In a forked child: a renewer of its own (its parent's thread and lock state stay behind)."""
    global _RENEWER
    _RENEWER = _Renewer()


os.register_at_fork(after_in_child=_renewer_after_fork)


def _renewing(ctx: Clients, cache_id: str, token: str) -> _Held:
    """Renew a claim while the step renders (`_Renewer`)."""
    return _RENEWER.hold(ctx, cache_id, token)


def advance(ctx: Clients, run_id: str, *, keep: int = 0) -> list[str]:
    """Skip what can no longer run, enqueue what is ready, and finish the run when nothing is left.

    Up to `keep` ready steps are marked queued but not enqueued; they are returned for the
    caller to run itself. One read decides: every caller changed a step before calling, so of
    two workers advancing at once the later reader sees both changes and finishes the run.
    """
    return _advance(ctx, run_id, keep=keep)[0]


def _advance(ctx: Clients, run_id: str, *, keep: int = 0, start: dict[str, Any] | None = None,
             view: DecisionView | None = None
             ) -> tuple[list[str], tuple[dict[str, Any] | None, list[Step], dict[str, dict[str, Any]]]]:
    """`advance`, also answering the view it decided on (run, steps, states as read).

    With `start` (the fields of a START), each kept step is queued and started in one call
    (`Runs.step_transitions`): the caller renders it at once. What `execute_step` checks before
    a start holds for such a step by construction: the run was running and the queue not paused
    in this very view, it has no queued job that could supersede it, and a freshly planned step
    has no failed attempts that could place it elsewhere.

    `view`: the run's `decision_view` as its caller read it right after its own change (in the
    same round trip as that change), instead of reading it here.
    """
    runs = ctx.state.runs
    run, steps, states, queue_paused = view if view is not None else runs.decision_view(run_id)
    if run is None or run["status"] not in (RunStatus.RUNNING, RunStatus.PAUSED):
        return [], (run, steps, states)
    _skip_blocked(runs, run_id, steps, states)
    attempt = int(run.get("attempt") or 1)
    kept: list[str] = []
    # A paused run, or the whole queue paused by an admin: ready steps wait (resuming advances).
    hold = run["status"] == RunStatus.PAUSED or queue_paused
    ready = [] if hold else [step for step in steps if lifecycle.ready(step, states)]
    for step in ready:
        sid = step["step_id"]
        # A step with failed attempts may belong elsewhere (`_placement`): never started here unseen.
        inline = len(kept) < keep and not (start is not None and states[sid].get("attempts"))
        tries = int(states[sid].get("tries") or 1)
        job: dict[str, Any] = {} if inline else {"queued_job": queues.step_job_id(run_id, sid, attempt, tries)}
        if inline and start is not None:
            cleared: dict[str, Any] = {"error": ""} if states[sid].get("error") else {}
            if runs.step_transitions(run_id, sid, [(StepEvent.ENQUEUE, {}), (StepEvent.START, {**start, **cleared})]):
                states[sid] = {**states[sid], **start, **cleared, "status": lifecycle.target(StepEvent.START)}
                kept.append(sid)
            continue
        if runs.step_transition(run_id, sid, StepEvent.ENQUEUE, **job):
            states[sid] = {**states[sid], "status": lifecycle.target(StepEvent.ENQUEUE)}
            if inline:
                kept.append(sid)
            else:
                queues.enqueue_step(ctx.rq_connection, run_id, sid, attempt, tries)
    if lifecycle.settled(states):
        _finish(ctx, run, steps, states)
    return kept, (run, steps, states)


def _skip_blocked(runs: Runs, run_id: str, steps: list[Step], states: dict[str, dict[str, Any]]) -> None:
    """Marks (in Redis and in `states`) every pending step below a failed or skipped one."""
    # Steps are in level order, so one pass carries a failure down the whole graph.
    for step in steps:
        sid = step["step_id"]
        blocked = lifecycle.blocked_by(step, states)
        if blocked is None:
            continue
        error = f"input step {blocked!r} did not complete"
        if runs.step_transition(run_id, sid, StepEvent.SKIP, error=error):
            states[sid] = {**states[sid], "status": lifecycle.target(StepEvent.SKIP), "error": error}


def _finish(ctx: Clients, run: Run, steps: list[Step], states: dict[str, dict[str, Any]]) -> None:
    run_id = run["id"]
    end = lifecycle.outcome(run.get("output_step", ""), states, order=[s["step_id"] for s in steps])
    if end.event == RunEvent.COMPLETE:
        digest = cast(str, end.output)  # a completed run has its output step's digest
        record = provenance.build(ctx, run, steps, states, digest)
        trace.mark("finish.provenance")
        # The output's ref (so it is not deleted while the run needs it) and, reused from another
        # user's run, the owner's grant go with the status change: one round trip (issue 19).
        completed, default_url = ctx.state.runs.complete(
            run_id, output=digest, ref=f"run:{run_id}", owner=run.get("owner") or "",
            output_hash=digest, finished=time.time(), provenance=record)
        if completed is None:
            raise NotFound(f"no cached item {digest}")
        if completed:
            _run_ended(ctx, run_id, run, default_url)
        return
    if ctx.state.runs.transition(run_id, RunEvent.FAIL, error=end.reason[:MAX_ERROR], finished=time.time()):
        notify_jobs.run_ended(ctx, run_id, run)


def _run_ended(ctx: Clients, run_id: str, run: Run, default_url: str) -> None:
    """What follows a run's completion: its notification and IPFS sharing (neither fails the run)."""
    trace.mark("finish.completed")
    # Its notify URL, if any (the owner's default came with the completion's answer).
    notify_jobs.run_ended(ctx, run_id, run, default_url=default_url)
    ctx.remote.after_run(run_id)  # IPFS add+pin when enabled
    trace.mark("finish.notified")


def _completed_along(ctx: Clients, run: Run, answer: object) -> None:
    """After a step's end that carried the run's completion: if it completed, what follows it."""
    completed, default_url = ctx.state.runs.complete_answer(answer)
    if completed:
        _run_ended(ctx, run["id"], run, default_url)


def _completing_provenance(ctx: Clients, run: Run, steps: list[Step], states: Mapping[str, dict[str, Any]], *,
                           step_id: str, end: dict[str, Any]) -> dict[str, Any] | None:
    """The run's provenance as it will be once `step_id` ends as `end` says (its status, output,
    duration and the attempt it adds), if that end completes the run: the run is running, the
    step is its output and every other step is done. None otherwise (the run is advanced as usual)."""
    if run.get("status") != RunStatus.RUNNING or run.get("output_step") != step_id or step_id not in states:
        return None
    if not all(state.get("status") in DONE for sid, state in states.items() if sid != step_id):
        return None
    before = states[step_id]
    attempts = [*(before.get("attempts") or []), end["attempt"]]
    ending = {key: value for key, value in end.items() if key != "attempt"}
    settled = {**states, step_id: {**before, **ending, "attempts": attempts}}
    record = provenance.build(ctx, run, steps, settled, end["output"])
    trace.mark("finish.provenance")
    return record


def advance_run(run_id: str) -> dict[str, Any]:
    """A job: enqueue a run's ready steps (after the run or the whole queue is resumed, or a requeue)."""
    queued = advance(process_clients(), run_id)
    return {"advanced": True, "kept": len(queued)}


def fail_run(ctx: Clients, run_id: str, reason: str) -> None:
    if ctx.state.runs.transition(run_id, RunEvent.FAIL, error=reason[:MAX_ERROR], finished=time.time()):
        notify_jobs.run_ended(ctx, run_id)


def on_work_failure(job: Job, connection: redis.Redis | None, exc_type: type[BaseException], exc_value: BaseException,
                    tb: TracebackType | None) -> None:
    """RQ failure callback of a token job (also fired when its worker died or was stopped)."""
    ctx = process_clients()
    got = ctx.state.fair.taken(job.id)
    if got is None:
        # It failed before taking any work (its worker's horse died first), or this failure was
        # already reported: a token again, in case a piece it stood for still waits in the pool
        # (a spare token is harmless: it finds nothing and ends).
        queues.enqueue_token(ctx.rq_connection, job.args[0])
        return
    user, piece = got
    if not ctx.state.fair.done(user, job.id):
        return  # reported by another path in the meantime (horse_killed, then RQ's own callback)
    if piece["kind"] == queues.PLAN:
        plan_failed(ctx, job, piece["run"], piece["id"], exc_type=exc_type, exc_value=exc_value)
    else:
        step_failed(ctx, job, piece["run"], piece["step"], piece["id"], exc_type=exc_type, exc_value=exc_value)


class StoppedOnRequest(RuntimeError):
    """RQ stopped the job on request (its run was cancelled): the attempt ends, cancelled."""


def on_work_stopped(job: Job, connection: redis.Redis | None) -> None:
    """RQ stopped callback of a token job (`send_stop_job_command`, sent when its run is cancelled):
    RQ fires this one instead of the failure callback, and the step must still end (cancelled)."""
    on_work_failure(job, connection, StoppedOnRequest, StoppedOnRequest("stopped on request"), None)


def on_plan_failure(job: Job, connection: redis.Redis | None, exc_type: type[BaseException], exc_value: BaseException,
                    tb: TracebackType | None) -> None:
    """RQ failure callback of a plan job enqueued on its own (before fair share)."""
    plan_failed(process_clients(), job, job.args[0], job.id, exc_type=exc_type, exc_value=exc_value)


def on_step_failure(job: Job, connection: redis.Redis | None, exc_type: type[BaseException], exc_value: BaseException,
                    tb: TracebackType | None) -> None:
    """RQ failure callback of a step job enqueued on its own (before fair share)."""
    run_id, step_id = job.args[:2]
    step_failed(process_clients(), job, run_id, step_id, job.id, exc_type=exc_type, exc_value=exc_value)


def plan_failed(ctx: Clients, job: Job, run_id: str, work_id: str, *, exc_type: object, exc_value: object) -> None:
    """A plan job failed (or its worker died).

    A plan job that was rendering its run's step itself (`render_inline`) fails that step's
    attempt (which may be retried), so the run's error names the step, as for a step job.
    """
    states = ctx.state.runs.step_states(run_id)
    if states:  # planned: the failure, if any is left to record, is the inline step's
        for step_id, state in states.items():
            if state.get("status") == StepStatus.RUNNING and state.get("job_id") == work_id:
                attempt_failed(ctx, run_id, step_id, job_id=work_id, worker=_worker_name(job),
                               error_type=_type_name(exc_type), reason=_describe(exc_type, exc_value))
        return
    fail_run(ctx, run_id, f"planning failed: {_describe(exc_type, exc_value)}")


def step_failed(ctx: Clients, job: Job, run_id: str, step_id: str, work_id: str, *, exc_type: object,
                exc_value: object) -> None:
    """A step job failed (or its worker died or was stopped).

    A failure the job itself recorded (an exception in `execute_step`) is not recorded twice:
    only a step still running this attempt, or still queued for it, is changed here.
    """
    state = ctx.state.runs.step_states(run_id).get(step_id, {})
    status = state.get("status")
    ours = (status == StepStatus.RUNNING and state.get("job_id") == work_id) or (
        status in (StepStatus.QUEUED, StepStatus.RETRYING) and state.get("queued_job", work_id) == work_id)
    if not ours:
        return
    attempt_failed(ctx, run_id, step_id, job_id=work_id, worker=_worker_name(job),
                   error_type=_type_name(exc_type), reason=_describe(exc_type, exc_value))


def _type_name(exc_type: object) -> str:
    return getattr(exc_type, "__name__", str(exc_type))


def _describe(exc_type: object, exc_value: object) -> str:
    name = _type_name(exc_type)
    if name == "AbandonedJobError":
        return "the worker rendering this step died (its heartbeat stopped)"
    if "WorkHorseTerminated" in name or "terminated" in str(exc_value).lower():
        return f"the worker process rendering this step was killed ({exc_value or name})"
    if name == "StopRequested" or "stop" in name.lower():
        return "stopped on request"
    return _short(exc_value) if exc_value else name


def _short(exc: BaseException | object) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR]


# Logging ------------------------------------------------------------------------------------
def step_finished(state: StateManager, run_id: str, job_id: str, step: Step, *, outcome: str, seconds: float,
                  worker: str = "", pipe: redis.client.Pipeline | None = None) -> None:
    """A step job ended: log its line as `key=value` pairs
    (`step run=<id> job=<job id> step=<step id> type=EFFECT outcome=completed seconds=1.234`) and
    count it for /metrics and on its worker's counters (a Redis hiccup here only loses the count,
    never the step's result). With `pipe`, the counts are queued there, for the caller to send
    with its own writes."""
    node_type = str(step.get("type") or "-")
    STEPS.info("step run=%s job=%s step=%s type=%s outcome=%s seconds=%.3f",
               run_id, job_id, step.get("step_id", "-"), node_type, outcome, seconds)
    try:
        state.step_metrics.record_step(node_type, outcome, seconds, worker=worker, pipe=pipe)
    except redis.RedisError as exc:
        STEPS.warning("step run=%s job=%s: could not record its timing: %s", run_id, job_id, type(exc).__name__)


class JobLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Stamps the run and job ids on every line a job logs."""

    def process(self, msg: object, kwargs: MutableMapping[str, Any]) -> tuple[str, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[run {str(extra.get('run', '-'))[:12]} job {extra.get('job', '-')}] {msg}", kwargs
