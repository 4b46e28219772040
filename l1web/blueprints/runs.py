"""Runs: the JSON API under `/runs`, and the live pages `/runs` and `/run/<id>`.

API clients get JSON (`wants_json`); browsers get pages that work as plain links and forms
(POST, then redirect) and that htmx keeps live by polling a fragment only while it is live.
"""

from __future__ import annotations

import threading
from functools import partial

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for

from l1web import notify, trace
from l1web.auth.access import require_admin
from l1web.auth.ratelimit import limit_run_submission
from l1web.errors import BadRequest, Conflict, L1Error, NotFound
from l1web.runs.progress import run_progress
from l1web.runs.service import PRIORITY_RANGE, Submission, parse_priority
from l1web.status import RunStatus, StepStatus
from l1web.users import User
from l1web.web import current, dagsvg
from l1web.web.current import signed_in
from l1web.web.errors import wants_json
from l1web.web.requests import json_body, prefer_wait
from l1web.web.shapes import list_args, list_view, listing_url, run_json, run_response

bp = Blueprint("runs", __name__)

#: Step statuses whose output exists: they count as done on the progress bar.
DONE = frozenset(s for s in StepStatus if s.done)
#: Run statuses a `?wait=` waits through (a paused run waits for a person: no point holding a thread).
WAIT_WHILE = (RunStatus.PENDING.value, RunStatus.RUNNING.value)


def check_notify_target(url: str, user: User) -> None:
    """400 unless `url` may be called (http(s), a public address unless the operator allows
    private ones) and the user has a signing secret to sign with."""
    try:
        notify.resolve(url, allow_private=current.settings().notify_allow_private)
    except notify.TargetRefused as exc:
        raise BadRequest(str(exc), field="notify_url") from None
    if not current.state().notify.user(user.name)["secret"]:
        raise BadRequest("set a signing secret first (PUT /notify) so deliveries can be signed", field="notify_url")


# JSON API -------------------------------------------------------------------------------------
@bp.post("/runs")
def submit():
    trace.mark("web.submit")
    user = signed_in()
    submission = Submission.from_json(json_body())
    if submission.notify_url:
        check_notify_target(submission.notify_url, user)
    trace.mark("web.checked")
    run, created = current.runs().submit(submission, user, admit=limit_run_submission)
    trace.mark("web.submitted")
    status = 201 if created else 200
    # `Prefer: wait=N` (RFC 7240): the answer comes when the run has ended (or after N seconds),
    # so a script that submits and waits makes one request, not two (render.py --sync).
    seconds = prefer_wait(MAX_WAIT)
    asked = bool(seconds) and run["status"] in WAIT_WHILE
    waited = asked and wait_for_end(run["id"], seconds or 0)
    if waited:
        run, steps, _ = current.runs().view(run["id"], user)
        response = jsonify(run_json(run, steps))
        response.headers["Preference-Applied"] = f"wait={seconds:g}"
    else:
        # A run just created has no steps yet (its plan writes them): nothing more to read.
        response, _ = run_response(run, status, steps=[]) if created else run_response(run)
    if asked:
        response.headers["L1-Waited"] = "1" if waited else "0"
    response.vary.add("Prefer")
    return response, status


@bp.get("/runs")
def index():
    signed_in()
    args = list_args()
    runs, total = current.state().runs.page(**args)
    if not wants_json():
        return render_template("runs.html", **list_view(runs, total, args))
    following = args["offset"] + len(runs)
    return jsonify({
        "runs": [run_json(run) for run in runs], "total": total,
        "offset": args["offset"], "limit": args["limit"],
        "next": listing_url("runs.index", following) if following < total else None,
    })


#: Longest `?wait=` on `GET /runs/<id>`, in seconds.
MAX_WAIT = 30.0
#: Requests of one web process that may wait at once (waitress serves with 8 threads: the rest
#: stay free for everything else); a request beyond them answers at once, saying `L1-Waited: 0`.
WAITERS = threading.BoundedSemaphore(4)


def wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise BadRequest(f"'wait' must be a number of seconds from 0 to {MAX_WAIT:g}", field="wait") from None
    if not 0 <= seconds <= MAX_WAIT:  # also refuses nan and inf
        raise BadRequest(f"'wait' must be a number of seconds from 0 to {MAX_WAIT:g}", field="wait")
    return seconds


def wait_for_end(run_id: str, seconds: float) -> bool:
    """Hold this request until the run leaves pending/running or `seconds` pass: a blocking wait
    on the run's change channel, so a client waiting for the end hears of it at once instead of
    polling. False, at once, when `WAITERS` requests already wait."""
    if not WAITERS.acquire(blocking=False):
        return False
    try:
        current.state().runs.wait_for_change(run_id, WAIT_WHILE, seconds)
    finally:
        WAITERS.release()
    return True


@bp.get("/runs/<run_id>")
def show(run_id: str):
    user = signed_in()
    if not wants_json():
        return redirect(url_for("runs.page", run_id=current.runs().get(run_id, user)["id"]))
    run, steps, _ = current.runs().view(run_id, user)  # polled by scripts: 1 round trip for the run
    seconds = wait_arg()
    waited = None
    if seconds and run["status"] in WAIT_WHILE:
        waited = wait_for_end(run["id"], seconds)
        if waited:
            run, steps, _ = current.runs().view(run_id, user)
    response = jsonify(run_json(run, steps))
    if waited is not None:
        response.headers["L1-Waited"] = "1" if waited else "0"
    return response


@bp.delete("/runs/<run_id>")
def delete(run_id: str):
    current.runs().delete(run_id, signed_in())
    return jsonify({"id": run_id, "deleted": True})


@bp.post("/runs/<run_id>/cancel")
def cancel(run_id: str):
    return run_response(current.runs().cancel(run_id, signed_in()))


@bp.post("/runs/<run_id>/rerun")
def rerun(run_id: str):
    return run_response(current.runs().rerun(run_id, signed_in(), admit=limit_run_submission))


@bp.post("/runs/<run_id>/priority")
def set_priority(run_id: str):
    body = json_body()
    if set(body) != {"priority"}:
        raise BadRequest("the body must be {\"priority\": n}", field="priority")
    return run_response(current.runs().set_priority(run_id, signed_in(), parse_priority(body["priority"])))


@bp.post("/runs/<run_id>/pause")
def pause(run_id: str):
    return run_response(current.runs().pause(run_id, signed_in()))


@bp.post("/runs/<run_id>/resume")
def resume(run_id: str):
    return run_response(current.runs().resume(run_id, signed_in()))


@bp.post("/runs/<run_id>/requeue")
def requeue(run_id: str):
    return run_response(current.runs().requeue(run_id, signed_in(), admit=limit_run_submission))


# The whole queue (admins) ------------------------------------------------------------------------
@bp.get("/admin/queue")
def queue_state():
    require_admin()
    return jsonify({"paused": current.runs().queue_paused()})


@bp.post("/admin/queue/<action>")
def queue_action(action: str):
    """Pause or resume the whole queue: JSON for scripts, a redirect back for the status page's form."""
    if action not in ("pause", "resume"):
        raise BadRequest(f"unknown action {action[:32]!r}; pause or resume")
    user = require_admin()
    if action == "pause":
        current.runs().pause_queue(user)
    else:
        current.runs().resume_queue(user)
    if wants_json():
        return jsonify({"paused": current.runs().queue_paused()})
    flash("The queue is paused: no new step starts." if action == "pause" else "The queue is running again.", "info")
    return redirect(request.referrer if _same_site(request.referrer) else url_for("runs.index"), code=303)


def _same_site(url: str | None) -> bool:
    return bool(url) and url.startswith(request.host_url)


@bp.get("/runs/<run_id>/provenance")
def provenance(run_id: str):
    run = current.runs().get(run_id, signed_in())
    if run["status"] != RunStatus.COMPLETED or not run.get("provenance"):
        raise Conflict(f"the run is {run['status']}; provenance exists once it has completed",
                       run_status=run["status"])
    response = jsonify(run["provenance"])
    if request.args.get("download") == "1":
        response.headers["Content-Disposition"] = f'attachment; filename="provenance-{run["id"][:16]}.json"'
    return response


#: Most lines `?tail=` may ask for (the whole log is at most `STEP_LOG_CAP` bytes anyway).
MAX_TAIL = 100_000
#: Lines the run page's log panel shows.
PANEL_LINES = 200


def owned_step(run_id: str, step_id: str) -> tuple[dict, dict]:
    """(run, step) for the run's owner or an admin; the same 404 for anyone else."""
    run = current.runs().get(run_id, signed_in())
    step = next((s for s in current.runs().steps_view(run["id"]) if s["step_id"] == step_id), None)
    if step is None:
        raise NotFound(f"run {run_id[:12]} has no step {step_id[:64]!r}")
    return run, step


def step_and_log(run_id: str, step_id: str) -> tuple[dict, dict, str]:
    """(run, step, log text), as `owned_step`."""
    run, step = owned_step(run_id, step_id)
    return run, step, current.state().watch.log(run["id"], step_id) or ""


def tail_arg() -> int | None:
    raw = request.args.get("tail")
    if raw is None or raw == "":
        return None
    try:
        lines = int(raw)
    except ValueError:
        raise BadRequest("'tail' must be a whole number of lines", field="tail") from None
    if not 1 <= lines <= MAX_TAIL:
        raise BadRequest(f"'tail' must be between 1 and {MAX_TAIL}", field="tail")
    return lines


def last_lines(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


@bp.get("/runs/<run_id>/steps/<step_id>/log")
def step_log(run_id: str, step_id: str):
    """A step's log as text: commands (local paths shortened), ffmpeg's output, the worker's lines."""
    lines = tail_arg()
    _, step, text = step_and_log(run_id, step_id)
    response = Response(last_lines(text, lines), mimetype="text/plain")
    response.headers["X-Step-Status"] = str(step.get("status") or "")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/runs/<run_id>/steps/<step_id>/preview")
def step_preview(run_id: str, step_id: str):
    """The last frame a running frame-loop step rendered (JPEG, refreshed every few seconds)."""
    run, step = owned_step(run_id, step_id)
    picture = current.state().watch.preview(run["id"], step["step_id"])
    if picture is None:
        raise NotFound(f"step {step_id[:64]!r} has no rendered frame to show")
    response = Response(picture, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# Pages ----------------------------------------------------------------------------------------
@bp.get("/runs/fragment")
def list_fragment():
    signed_in()
    args = list_args()
    runs, total = current.state().runs.page(**args)
    return render_template("_runs_list.html", **list_view(runs, total, args))


def _run_view(run_id: str) -> dict:
    run, steps, deliveries = current.runs().view(run_id, signed_in())
    for step in steps:  # a running frame loop's last rendered frame, refreshed with the fragment
        at = (step.get("progress") or {}).get("preview_at")
        if step.get("status") == StepStatus.RUNNING and at:
            step["preview_url"] = url_for("runs.step_preview", run_id=run["id"], step_id=step["step_id"], at=int(at))
    live = RunStatus(run["status"]).live
    if steps:
        nodes = dagsvg.from_steps(steps)
    else:  # not planned yet (or never): the recipe's own graph
        nodes = dagsvg.from_dag((run.get("recipe") or {}).get("dag") or {},
                                state=StepStatus.PENDING if live else None)
    output = current.state().cache.get(run["output_hash"]) if run.get("output_hash") else None
    return {
        "run": run, "steps": steps, "live": live, "output": output,
        "progress": run_progress(run, steps),
        "deliveries": deliveries,
        "done": sum(1 for s in steps if s.get("status") in DONE),
        "total": int(run.get("steps_total") or len(steps)),
        "dag": dagsvg.render(nodes, title=f"Steps of run {run['id'][:12]}"),
    }


@bp.get("/run/<run_id>")
def page(run_id: str):
    view = _run_view(run_id)
    low, high = PRIORITY_RANGE
    ceiling = high if signed_in().is_admin else min(high, current.runs().user_max_priority)
    return render_template("run.html", **view, **_log_panel(view["run"], view["steps"], request.args.get("log")),
                           priority_min=low, priority_max=ceiling)


#: Step statuses whose log may still grow.
LOG_LIVE = frozenset({StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RUNNING})


def _log_panel(run: dict, steps: list[dict], chosen: str | None) -> dict:
    """The log panel's step (`?log=` or, following the run, the step rendering now, else the
    failed one, else the output step), its last lines, and whether the panel keeps polling."""
    rendered = [s for s in steps if s.get("type") != "SOURCE"]
    step = next((s for s in rendered if s["step_id"] == chosen), None) if chosen else None
    follow = step is None
    if step is None:
        by_status = {str(s.get("status")): s for s in reversed(rendered)}
        step = (by_status.get(StepStatus.RUNNING) or by_status.get(StepStatus.FAILED)
                or next((s for s in rendered if s["step_id"] == run.get("output_step")), None)
                or (rendered[-1] if rendered else None))
    live = RunStatus(run["status"]).live
    text = current.state().watch.log(run["id"], step["step_id"]) or "" if step else ""
    return {
        "log_step": step, "log_text": last_lines(text, PANEL_LINES), "log_lines": PANEL_LINES,
        "log_follow": follow, "log_steps": rendered,
        "log_polling": live and (follow or (step is not None and step.get("status") in LOG_LIVE)),
    }


@bp.get("/run/<run_id>/log-panel")
def log_panel(run_id: str):
    """The run page's log panel (htmx polls it while the step, or the followed run, is live)."""
    run, steps, _ = current.runs().view(run_id, signed_in())
    return render_template("_step_log.html", run=run, **_log_panel(run, steps, request.args.get("step")))


@bp.get("/run/<run_id>/fragment")
def run_fragment(run_id: str):
    return render_template("_run_status.html", **_run_view(run_id))


def _form_priority(raw: str, run_id: str, user: User) -> dict:
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest("the priority must be a whole number", field="priority") from None
    return current.runs().set_priority(run_id, user, parse_priority(value))


@bp.post("/run/<run_id>/<action>")
def act(run_id: str, action: str):
    """The page's buttons: cancel, re-run or delete, then back to a page (POST-redirect-GET)."""
    actions = {"cancel": current.runs().cancel,
               "rerun": partial(current.runs().rerun, admit=limit_run_submission),
               "requeue": partial(current.runs().requeue, admit=limit_run_submission),
               "pause": current.runs().pause, "resume": current.runs().resume,
               "delete": current.runs().delete}
    if action == "priority":  # the run page's priority form: a number field
        actions["priority"] = partial(_form_priority, request.form.get("priority", ""))
    if action not in actions:
        raise BadRequest(f"unknown action {action[:32]!r}")
    user = signed_in()
    try:
        actions[action](run_id, user)
    except L1Error as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(url_for("runs.page", run_id=run_id), code=303)
    if action == "delete":
        flash(f"Run {run_id[:12]} deleted.", "info")
        return redirect(url_for("runs.index"), code=303)
    flash({"cancel": "Run cancelled.", "rerun": "Run started again.", "pause": "Run paused.",
           "resume": "Run resumed.", "requeue": "Unfinished steps queued again.",
           "priority": "Priority changed."}[action], "info")
    return redirect(url_for("runs.page", run_id=run_id), code=303)
