"""The jobs that execute a run: plan it, render each step, and advance it as steps finish.

Flow: `plan_run` (one job) analyzes and plans the run's DAG and writes its steps; `advance`
then enqueues every step whose inputs are ready. Each `execute_step` job reuses a recorded
result when there is one, or claims the step's cache id, renders it and records the output;
then it calls `advance` again. Steps move between states only by compare-and-set, so workers
racing on the same run enqueue each step once and finish the run once. Failure callbacks
(which RQ also fires for jobs whose worker died) mark the step failed and advance the run, so
a run never stays "running" with nobody working on it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import redis
from rq import get_current_job

from l1web.clients import Clients, process_clients
from l1web.engine import estimate
from l1web.engine.analysis import analyze
from l1web.engine.plan import plan as plan_dag
from l1web.engine.steps import run_step
from l1web.engine.watch import Redactor, StepWatch, watching
from l1web.engine.watch import current as watch_current
from l1web.ipfs import fetch, pinning
from l1web.jobs import chunked, queues
from l1web.jobs import notify as notify_jobs
from l1web.jobs.steplog import JobLogAdapter, step_finished
from l1web.recipes.parse import bind_inputs, recipe_from_data
from l1web.runs import provenance
from l1web.runs.model import RunStatus, StepStatus

log = logging.getLogger(__name__)

#: Seconds between polls while waiting for another worker's claim on the same step.
CLAIM_POLL = 0.2
#: Folder under CACHE_DIR where steps render before their output enters the store.
WORK_DIR = "work"
#: Longest error text kept on a step or run, in characters.
MAX_ERROR = 2000


def plan_run(run_id: str, render_inline: bool = False) -> dict:
    """Analyze and plan a run, write its steps, and enqueue the ready ones.

    With `render_inline` (runs with a single render step, whose plan job gets the step's
    timeout too) the ready step is rendered in this job rather than enqueued: one job per
    one-step run instead of two, which halves RQ's share of a quick run.
    """
    ctx = process_clients()
    job = get_current_job()
    jlog = JobLogAdapter(log, {"run": run_id, "job": job.id if job else "-"})
    runs = ctx.state.runs
    run = runs.get(run_id)
    if run is None or not runs.set_status(run_id, RunStatus.RUNNING, expected=[RunStatus.PENDING],
                                          started=time.time()):
        jlog.info("run is not pending any more; nothing to plan")
        return {"planned": False}
    try:
        recipe = recipe_from_data(run["recipe"])
        dag = bind_inputs(recipe, run["input_hashes"])
        fetch.ensure_local(ctx, run["input_hashes"].values())  # workers on other hosts fetch their inputs
        analysis = analyze(dag, ctx.store)
        plan = plan_dag(dag, analysis, chunked.chunking(ctx.settings))
        expected = estimate.expect(plan, analysis)  # each step's 100 % and weight in the run's progress
    except Exception as exc:
        fail_run(ctx, run_id, f"planning failed: {exc}")
        raise
    steps = [dict(step, order=index, expect=expected[step["step_id"]]) for index, step in enumerate(plan["steps"])]
    runs.init_steps(run_id, steps, {step["step_id"]: _initial_state(ctx, step) for step in steps})
    runs.update(run_id, plan_id=plan["plan_id"], output_step=plan["output"], steps_total=len(steps))
    jlog.info("planned %d steps (plan %s)", len(steps), plan["plan_id"][:12])
    for step_id in advance(ctx, run_id, keep=1 if render_inline else 0):
        execute_step(run_id, step_id)
    return {"planned": True, "plan_id": plan["plan_id"], "steps": len(steps)}


def _initial_state(ctx: Clients, step: dict) -> dict:
    """SOURCE steps are their input files: already there (cached) or missing (failed)."""
    if step["type"] != "SOURCE":
        return {"status": StepStatus.PENDING}
    if fetch.has(ctx, step["cache_id"]):  # on this host, or fetched from L1/IPFS (workers elsewhere)
        return {"status": StepStatus.CACHED, "output": step["cache_id"], "duration": 0}
    return {"status": StepStatus.FAILED, "error": f"input {step['cache_id'][:12]}… is no longer in the cache"}


def execute_step(run_id: str, step_id: str) -> dict:
    """Render one step of a run, or reuse its recorded output; then advance the run."""
    ctx = process_clients()
    job = get_current_job()
    job_id = job.id if job else "inline"
    jlog = JobLogAdapter(log, {"run": run_id, "job": job_id})
    runs = ctx.state.runs
    run, steps, states = runs.snapshot(run_id)
    if run is None or run["status"] != RunStatus.RUNNING:
        runs.update_step(run_id, step_id, expected=[StepStatus.QUEUED], status=StepStatus.SKIPPED,
                         error="run is no longer running")
        return {"status": "skipped"}
    if not runs.update_step(run_id, step_id, expected=[StepStatus.QUEUED], status=StepStatus.RUNNING,
                            started=time.time(), job_id=job_id):
        return {"status": "not-queued"}
    step = next(s for s in steps if s["step_id"] == step_id)
    # The inputs were final before this step was queued, so this snapshot has their outputs.
    input_digests = [states[dep].get("output") for dep in step["inputs"]]
    started = time.monotonic()
    watch = step_watch(ctx, run_id, step)
    watch.line(f"step {step_id} ({step['type']}) started on worker job {job_id}")
    try:
        try:
            with watching(watch):
                digest, cached = _produce(ctx, run, step, job_id, jlog, inputs=input_digests, steps=steps)
        finally:
            if chunked.is_join(step):  # joined or not, the chunks were temporary
                chunked.remove_chunks(ctx, steps, step, runs.step_states(run_id))
    except Exception as exc:
        watch.line(f"step {step_id} failed: {_short(exc)}")
        watch.finish(ok=False)
        runs.update_step(run_id, step_id, expected=[StepStatus.RUNNING], status=StepStatus.FAILED,
                         error=with_log_excerpt(_short(exc), ctx.state.watch.log(run_id, step_id)),
                         finished=time.time(), duration=round(time.monotonic() - started, 3))
        jlog.warning("step %s failed: %s", step_id, _short(exc))
        step_finished(ctx.state, run_id, job_id, step, outcome=StepStatus.FAILED,
                      seconds=time.monotonic() - started)
        advance(ctx, run_id)
        raise
    status = StepStatus.CACHED if cached else StepStatus.COMPLETED
    watch.line(f"step {step_id} {status}: output {digest}")
    watch.finish(ok=True)
    runs.update_step(run_id, step_id, expected=[StepStatus.RUNNING], status=status, output=digest,
                     finished=time.time(), duration=round(time.monotonic() - started, 3))
    ctx.state.cache.incr("cache_hits" if cached else "cache_misses")
    step_finished(ctx.state, run_id, job_id, step, outcome=status, seconds=time.monotonic() - started)
    jlog.info("step %s %s → %s", step_id, status, digest[:12])
    advance(ctx, run_id)
    chunked.sweep(ctx)  # this host's copies of chunks joined elsewhere
    return {"status": str(status), "output": digest}


def step_watch(ctx: Clients, run_id: str, step: dict) -> StepWatch:
    """The watch a step renders under: progress and log go to `state.watch` (one pipelined
    write at most every `engine.watch.INTERVAL` seconds), local paths shortened, secrets hidden."""
    expect = step.get("expect") or {}
    cache_dir = ctx.settings.cache_dir
    redact = Redactor({str(cache_dir / WORK_DIR): "<work>", str(cache_dir): "<cache>"},
                      secrets=[ctx.settings.worker_token, ctx.settings.secret_key])
    step_id = step["step_id"]

    def sink(progress: dict, text: str) -> None:
        ctx.state.watch.publish(run_id, step_id, progress, text)

    def preview(jpeg: bytes) -> None:
        ctx.state.watch.publish_preview(run_id, step_id, jpeg)

    return StepWatch(seconds=expect.get("seconds"), frames=expect.get("frames"), sink=sink,
                     preview_sink=preview, redact=redact)


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


def _produce(ctx: Clients, run: dict, step: dict, holder: str, jlog, *, inputs: list[str],
             steps: list[dict] = ()) -> tuple[str, bool]:
    """The step's output digest and whether it was reused rather than rendered here."""
    cache_id = step["cache_id"]
    force = run.get("force") == "1"
    deadline = time.monotonic() + queues.STEP_TIMEOUT
    waiting = False
    whole = chunked.joined_whole(list(steps), step) if chunked.is_chunk(step) else None
    while True:
        if not force:
            found = _recorded(ctx, cache_id)
            if found:
                return found, True
            if whole is not None and (found := _recorded(ctx, whole["cache_id"])):
                return found, True  # the joined whole exists: this chunk's frames are in it
        token = ctx.state.claims.acquire(cache_id, holder)
        if token:
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
            digest = _render(ctx, run, step, inputs)
    except BaseException:
        ctx.state.claims.release(cache_id, token)
        raise
    if not ctx.state.claims.commit(cache_id, token, digest):
        jlog.warning("claim on %s lapsed while rendering; result kept but not recorded", cache_id[:12])
    return digest, False


def _recorded(ctx: Clients, cache_id: str) -> str | None:
    digest = ctx.state.results.get_result(cache_id)
    if digest and fetch.has(ctx, digest):
        return digest
    return fetch.peer_result(ctx, cache_id)  # a peer L1 rendered it (IPNS sync): fetched and verified


def _render(ctx: Clients, run: dict, step: dict, inputs: list[str]) -> str:
    fetch.ensure_local(ctx, inputs)
    input_paths = [ctx.store.path_for(digest) for digest in inputs]
    # Renders happen on the cache's filesystem so the output moves into the store by rename.
    work_root = ctx.settings.cache_dir / WORK_DIR
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="step-", dir=work_root))
    try:
        out = run_step(step, input_paths, work, timeout=ctx.settings.step_timeout)
        if chunked.is_chunk(step):  # temporary, nobody's media: removed once joined
            digest = ctx.store.put_file(out, source=f"{chunked.SOURCE_PREFIX}{run['id']}")
            ctx.state.removed_chunks.discard(digest)
            fetch.share(ctx, digest, None)
            return digest
        digest = ctx.store.put_file(out, source=f"run:{run['id']}", owner=run.get("owner") or None)
        fetch.share(ctx, digest, run.get("owner"))  # a worker on another host sends it to the L1 server
        return digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def step_log_line(text: str) -> None:
    """A worker line for the log of the step rendering in this context, if any."""
    current = watch_current()
    if current is not None:
        current.line(text)


class _renewing:
    """Renews a claim in a background thread while the step renders."""

    def __init__(self, ctx: Clients, cache_id: str, token: str) -> None:
        self.ctx, self.cache_id, self.token = ctx, cache_id, token
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from l1web.state.keys import CLAIM_TTL

        while not self.stop.wait(CLAIM_TTL / 3):
            try:
                if not self.ctx.state.claims.renew(self.cache_id, self.token):
                    return
            except redis.RedisError as exc:  # Redis restarting: keep rendering, renew next time
                log.warning("could not renew the claim on %s: %s", self.cache_id[:12], exc)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def advance(ctx: Clients, run_id: str, *, keep: int = 0) -> list[str]:
    """Skip what can no longer run, enqueue what is ready, and finish the run when nothing is left.

    Up to `keep` ready steps are marked queued but not enqueued; they are returned for the
    caller to run itself. One read decides: every caller changed a step before calling, so of
    two workers advancing at once the later reader sees both changes and finishes the run.
    """
    runs = ctx.state.runs
    run, steps, states = runs.snapshot(run_id)
    if run is None or run["status"] != RunStatus.RUNNING:
        return []
    _skip_blocked(runs, run_id, steps, states)
    attempt = int(run.get("attempt") or 1)
    kept: list[str] = []
    for step in steps:
        sid = step["step_id"]
        if states[sid]["status"] != StepStatus.PENDING:
            continue
        ready = all(StepStatus(states[dep]["status"]).done for dep in step["inputs"])
        if ready and runs.update_step(run_id, sid, expected=[StepStatus.PENDING], status=StepStatus.QUEUED):
            states[sid] = {**states[sid], "status": StepStatus.QUEUED}
            if len(kept) < keep:
                kept.append(sid)
            else:
                queues.enqueue_step(ctx.rq_connection, run_id, sid, attempt)
    if any(not StepStatus(s["status"]).final for s in states.values()):
        return kept
    _finish(ctx, run, steps, states)
    return kept


def _skip_blocked(runs, run_id: str, steps: list[dict], states: dict[str, dict]) -> None:
    """Marks (in Redis and in `states`) every pending step below a failed or skipped one."""
    # Steps are in level order, so one pass carries a failure down the whole graph.
    for step in steps:
        sid = step["step_id"]
        if states[sid]["status"] != StepStatus.PENDING:
            continue
        blocked = [dep for dep in step["inputs"]
                   if states[dep]["status"] in (StepStatus.FAILED, StepStatus.SKIPPED)]
        error = f"input step {blocked[0]!r} did not complete" if blocked else ""
        if blocked and runs.update_step(run_id, sid, expected=[StepStatus.PENDING], status=StepStatus.SKIPPED,
                                        error=error):
            states[sid] = {**states[sid], "status": StepStatus.SKIPPED, "error": error}


def _finish(ctx: Clients, run: dict, steps: list[dict], states: dict[str, dict]) -> None:
    run_id = run["id"]
    output = states.get(run.get("output_step", ""), {})
    if StepStatus(output.get("status", StepStatus.FAILED)).done:
        digest = output["output"]
        ctx.state.cache.add_ref(digest, f"run:{run_id}")
        if run.get("owner"):  # reused from another user's run: the output is this owner's too now
            ctx.state.cache.grant(digest, run["owner"])
        record = provenance.build(ctx, run, steps, states, digest)
        if ctx.state.runs.set_status(run_id, RunStatus.COMPLETED, expected=[RunStatus.RUNNING],
                                     output_hash=digest, finished=time.time(), provenance=record):
            notify_jobs.run_ended(ctx, run_id)  # its notify URL, if any; never fails the run
        pinning.after_run(ctx, run_id)  # IPFS add+pin when enabled; never fails the run
        return
    failed = [(sid, s) for sid, s in states.items() if s["status"] == StepStatus.FAILED]
    reason = f"step {failed[0][0]!r} failed: {failed[0][1].get('error', 'unknown error')}" if failed \
        else "the output step did not complete"
    if ctx.state.runs.set_status(run_id, RunStatus.FAILED, expected=[RunStatus.RUNNING],
                                 error=reason[:MAX_ERROR], finished=time.time()):
        notify_jobs.run_ended(ctx, run_id)


def fail_run(ctx: Clients, run_id: str, reason: str) -> None:
    if ctx.state.runs.set_status(run_id, RunStatus.FAILED, expected=[RunStatus.PENDING, RunStatus.RUNNING],
                                 error=reason[:MAX_ERROR], finished=time.time()):
        notify_jobs.run_ended(ctx, run_id)


def on_plan_failure(job, connection, exc_type, exc_value, tb) -> None:
    """RQ failure callback (also fired for a plan job whose worker died).

    A plan job that was rendering its run's step itself (`render_inline`) fails that step,
    so the run's error names the step, as it would for a step job.
    """
    ctx = process_clients()
    run_id = job.args[0]
    rendering = [sid for sid, s in ctx.state.runs.step_states(run_id).items()
                 if s.get("status") == StepStatus.RUNNING and s.get("job_id") == job.id]
    for step_id in rendering:
        ctx.state.runs.update_step(run_id, step_id, expected=[StepStatus.RUNNING], status=StepStatus.FAILED,
                                   error=_describe(exc_type, exc_value), finished=time.time())
    if rendering:
        advance(ctx, run_id)
    fail_run(ctx, run_id, f"planning failed: {_describe(exc_type, exc_value)}")


def on_step_failure(job, connection, exc_type, exc_value, tb) -> None:
    """RQ failure callback: also fired when the worker running the step died or was stopped."""
    ctx = process_clients()
    run_id, step_id = job.args
    ctx.state.runs.update_step(run_id, step_id, expected=[StepStatus.QUEUED, StepStatus.RUNNING],
                               status=StepStatus.FAILED, error=_describe(exc_type, exc_value),
                               finished=time.time())
    _, steps, states = ctx.state.runs.snapshot(run_id)
    step = next((s for s in steps if s["step_id"] == step_id), None)
    if step is not None and chunked.is_join(step):  # a join killed mid-way: its chunks go too
        chunked.remove_chunks(ctx, steps, step, states)
    advance(ctx, run_id)


def _describe(exc_type, exc_value) -> str:
    name = getattr(exc_type, "__name__", str(exc_type))
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
