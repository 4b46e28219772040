"""The workers page (admins): every RQ worker, what it renders now, its counts; drain and resume.

Drained workers finish the step they are rendering and take no more until resumed; the drain is
kept in Redis by worker name (`state.workers`), so it outlives a restart of the worker. The worker
side is `L1Worker.dequeue_job_and_maintain_ttl` (`l1web/worker.py`). RQ's own dashboard stays at `/rq`.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, url_for

from l1web import metrics
from l1web.auth.access import require_admin
from l1web.errors import BadRequest, NotFound
from l1web.jobs import queues
from l1web.status import StepStatus
from l1web.web import current
from l1web.web.errors import wants_json

bp = Blueprint("workers", __name__)

#: Longest worker name accepted in a URL (RQ's own names are 32 hex digits).
MAX_NAME = 200
#: What the page shows for a worker that is drained: still finishing a step, or idle.
DRAINING, DRAINED, OFFLINE = "draining", "drained", "offline"


def current_step(job_id: str | None) -> dict | None:
    """The run and step a worker's current RQ job is rendering (or planning), with its progress."""
    if not job_id:
        return None
    job = queues.fetch(current.clients().rq_connection, job_id)
    if job is None:
        return None
    taken = current.state().fair.taken(job_id)  # the piece a token job took, recorded under its id
    work = taken[1] if taken else {}
    if work:
        run_id, step_id, piece = work.get("run"), work.get("step"), work.get("id")
    elif job.func_name.endswith(("execute_step", "plan_run")) and job.args:  # a job of its own (no fair share)
        run_id, step_id, piece = job.args[0], (job.args[1] if job.func_name.endswith("execute_step") else None), job.id
    else:
        return {"job": job_id, "what": job.description or job.func_name}
    run = current.state().runs.get(run_id) if run_id else None
    if run is None:
        return {"job": job_id, "what": "a run that no longer exists"}
    steps = current.runs().steps_view(run_id)
    step = next((s for s in steps if s["step_id"] == step_id), None) if step_id else None
    if step is None:  # a plan job: planning, or rendering its one step itself
        step = next((s for s in steps if s.get("job_id") == piece and s.get("status") == StepStatus.RUNNING), None)
    out = {"job": job_id, "run": run_id, "owner": run.get("owner") or "", "recipe": run.get("recipe_name") or "",
           "link": url_for("runs.page", run_id=run_id)}
    if step is None:
        return {**out, "what": "planning", "step": None, "percent": None, "eta": None}
    progress = step.get("progress") or {}
    return {**out, "what": "rendering", "step": step["step_id"], "type": step.get("type"),
            "status": step.get("status"), "percent": progress.get("percent"), "eta": progress.get("eta")}


def worker_rows() -> list[dict]:
    """Every registered worker, then every drained name that is not running now (offline)."""
    bundle = current.clients()
    found = metrics.workers(bundle.rq_connection)
    drained = bundle.state.workers.drained()
    offline = sorted(drained - {w.name for w in found})
    stats = bundle.state.workers.stats([w.name for w in found] + offline)
    rows = []
    for w in found:
        is_drained = w.name in drained
        shown = (DRAINING if w.current_job else DRAINED) if is_drained else w.state
        rows.append({
            "name": w.name, "hostname": w.hostname, "pid": w.pid, "queues": w.queues, "state": shown,
            "rq_state": w.state, "drained": is_drained, "last_heartbeat": w.last_heartbeat,
            "current": current_step(w.current_job), **stats[w.name],
            "jobs_done": w.successful, "jobs_failed": w.failed,
        })
    for name in offline:
        rows.append({"name": name, "hostname": None, "pid": None, "queues": [], "state": OFFLINE, "rq_state": None,
                     "drained": True, "last_heartbeat": None, "current": None, **stats[name],
                     "jobs_done": None, "jobs_failed": None})
    return rows


@bp.get("/workers")
def index():
    require_admin()
    rows = worker_rows()
    if wants_json():
        return jsonify({"workers": rows, "queue_paused": current.runs().queue_paused()})
    return render_template("workers.html", workers=rows, queue_paused=current.runs().queue_paused())


@bp.get("/workers/fragment")
def fragment():
    require_admin()
    return render_template("_workers_table.html", workers=worker_rows())


@bp.post("/workers/<name>/<action>")
def act(name: str, action: str):
    """Drain a running worker (it finishes its current step, takes no more) or resume a drained one."""
    if action not in ("drain", "resume"):
        raise BadRequest(f"unknown action {action[:32]!r}; drain or resume")
    require_admin()
    if len(name) > MAX_NAME:
        raise BadRequest(f"a worker name has at most {MAX_NAME} characters")
    workers = current.state().workers
    running = {w.name for w in metrics.workers(current.clients().rq_connection)}
    if action == "drain":
        if name not in running:
            raise NotFound(f"no worker named {name[:64]!r} is running")
        workers.drain(name)
        message = f"Worker {name} is draining: it finishes its current step and takes no more."
    else:
        if name not in running and not workers.is_drained(name):
            raise NotFound(f"no worker named {name[:64]!r} is running or drained")
        workers.resume(name)
        message = f"Worker {name} takes work again."
    if wants_json():
        row = next((r for r in worker_rows() if r["name"] == name), None)
        return jsonify(row or {"name": name, "drained": False, "state": OFFLINE})
    flash(message, "info")
    return redirect(url_for("workers.index"), code=303)
