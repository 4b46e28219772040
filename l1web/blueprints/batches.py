"""Batches (one recipe over many inputs) and bulk actions on runs: JSON API and pages.

- `POST /batches` — JSON `{"recipe", "inputs": [one entry per run], …}`, or the recipe page's form
  (the recipe's one variable input over the media items ticked); 201 with the batch.
- `GET /batches`, `GET /batches/<id>` — your batches; one batch with its counts per status and runs.
- `POST /batches/<id>/<action>` — cancel, pause, resume, requeue or delete every run of the batch.
- `POST /runs/bulk` — `{"action", "runs": [ids]}`, or the runs list's checkboxes (a plain form,
  which htmx posts in place).

Forms work without JavaScript (POST, then a redirect with a message); the CSRF check is the app's.
A batch or run of someone else's answers like an unknown one.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from l1web.auth.ratelimit import limit_run_submission
from l1web.errors import BadRequest, L1Error
from l1web.runs.batches import BULK_ACTIONS, MAX_BATCH, BatchService, BatchSubmission
from l1web.users import User
from l1web.web import current
from l1web.web.current import signed_in
from l1web.web.errors import wants_json
from l1web.web.htmx import is_htmx
from l1web.web.requests import json_body, paging
from l1web.web.shapes import list_args, list_view, run_json

bp = Blueprint("batches", __name__)

#: Batches per page of the listing.
PAGE_SIZE = 50
#: What a finished bulk action says, per action.
DONE_WORDS = {"cancel": "cancelled", "pause": "paused", "resume": "resumed", "requeue": "requeued",
              "delete": "deleted"}


def batches() -> BatchService:
    return BatchService(current.runs())


def batch_limit() -> int:
    """Most runs in one batch: MAX_BATCH, and never more than one burst of the run rate limit."""
    return max(1, min(MAX_BATCH, current.settings().run_rate_burst))


def batch_json(batch: dict, user: User) -> dict:
    runs, counts = batches().view(batch)
    out = {k: v for k, v in batch.items() if k not in ("runs",)}
    out.update(run_ids=batch["runs"], counts=counts, runs=[run_json(r) for r in runs],
               links={"self": f"/batches/{batch['id']}"})
    return out


def summary(action: str, results: dict[str, dict]) -> tuple[str, str]:
    """(message, category) for a page after a bulk action."""
    done = sum(1 for r in results.values() if r["ok"])
    refused = [r["error"] for r in results.values() if not r["ok"]]
    text = f"{done} run{'' if done == 1 else 's'} {DONE_WORDS[action]}."
    if refused:
        reasons = sorted(set(refused))
        text += f" {len(refused)} refused: {reasons[0]}" + (f" (and {len(reasons) - 1} other reasons)"
                                                            if len(reasons) > 1 else "")
    return text, "error" if refused and not done else "info"


# Creating -------------------------------------------------------------------------------------
@bp.post("/batches")
def create():
    user = signed_in()
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _create_from_form(user)
    submission = BatchSubmission.from_json(json_body(), limit=batch_limit())
    batch = batches().create(submission, user, admit=limit_run_submission)
    return jsonify(batch_json(batch, user)), 201


def _create_from_form(user: User):
    """The recipe page's "Run over many media" form: its one variable input over the ticked items."""
    recipe = request.form.get("recipe", "")
    back = url_for("recipes.page", config_id=recipe) if recipe else url_for("batches.index")
    body: dict = {"recipe": recipe, "inputs": request.form.getlist("media")}
    if request.form.get("output_name"):
        body["output_name"] = request.form["output_name"]
    try:
        if not body["inputs"]:
            raise BadRequest("tick at least one media item to run the recipe over", field="inputs")
        batch = batches().create(BatchSubmission.from_json(body, limit=batch_limit()), user,
                                 admit=limit_run_submission)
    except L1Error as exc:
        if exc.status == 404 and exc.details.get("field") == "recipe":
            raise
        flash(exc.message, "error")
        return redirect(back, code=303)
    flash(f"Batch started: {batch['count']} run{'' if batch['count'] == 1 else 's'}.", "info")
    return redirect(url_for("batches.page", batch_id=batch["id"]), code=303)


# Reading --------------------------------------------------------------------------------------
@bp.get("/batches")
def index():
    user = signed_in()
    offset = paging(PAGE_SIZE, fixed_limit=True).offset
    found, total = current.state().batches.page(user.name, offset=offset, limit=PAGE_SIZE)
    if wants_json():
        return jsonify({"batches": [{k: v for k, v in b.items() if k != "runs"} | {"run_ids": b["runs"]}
                                    for b in found], "total": total, "offset": offset})
    return render_template("batches.html", batches=found, total=total, offset=offset, page_size=PAGE_SIZE)


def _batch_view(batch_id: str) -> dict:
    batch = batches().get(batch_id, signed_in())
    runs, counts = batches().view(batch)
    from l1web.runs.model import RunStatus

    return {"batch": batch, "runs": runs, "counts": counts,
            "live": any(RunStatus(r["status"]).live for r in runs)}


@bp.get("/batches/<batch_id>")
def page(batch_id: str):
    if wants_json():
        user = signed_in()
        return jsonify(batch_json(batches().get(batch_id, user), user))
    return render_template("batch.html", **_batch_view(batch_id))


@bp.get("/batches/<batch_id>/fragment")
def fragment(batch_id: str):
    return render_template("_batch_status.html", **_batch_view(batch_id))


# Acting ---------------------------------------------------------------------------------------
@bp.post("/batches/<batch_id>/<action>")
def act(batch_id: str, action: str):
    """One action over every run of the batch (delete also removes the batch once its runs are gone)."""
    if action not in BULK_ACTIONS:
        raise BadRequest(f"unknown action {action[:32]!r}; one of: {', '.join(BULK_ACTIONS)}")
    user = signed_in()
    service = batches()
    batch = service.get(batch_id, user)
    if action == "delete":
        results = service.delete(batch, user)
    else:
        results = service.bulk(action, list(batch["runs"]), user, admit=limit_run_submission)
    gone = current.state().batches.get(batch["id"]) is None
    if wants_json():
        return jsonify({"action": action, "results": results, "batch_deleted": gone})
    message, category = summary(action, results)
    flash(message + (" The batch is gone." if gone else ""), category)
    return redirect(url_for("batches.index") if gone else url_for("batches.page", batch_id=batch["id"]), code=303)


@bp.post("/runs/bulk")
def bulk():
    """One action over the runs chosen: JSON `{"action", "runs"}`, or the runs list's form."""
    user = signed_in()
    form = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
    if form:
        action, run_ids = request.form.get("action", ""), request.form.getlist("run")
    else:
        body = json_body()
        unknown = sorted(set(body) - {"action", "runs"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        action, run_ids = body.get("action"), body.get("runs")
        if not isinstance(action, str):
            raise BadRequest(f"'action' must be one of: {', '.join(BULK_ACTIONS)}", field="action")
        if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
            raise BadRequest("'runs' must be a list of run ids", field="runs")
    if not form or wants_json() and not is_htmx():
        results = batches().bulk(action, run_ids, user, admit=limit_run_submission)
        return jsonify({"action": action, "results": results,
                        "done": sum(1 for r in results.values() if r["ok"]),
                        "refused": sum(1 for r in results.values() if not r["ok"])})
    try:
        results = batches().bulk(action, run_ids, user, admit=limit_run_submission)
        message, category = summary(action, results)
    except BadRequest as exc:  # no action or no run chosen: said on the page, nothing done
        message, category = exc.message, "error"
    if is_htmx():  # the list in place, with the outcome above it
        args = list_args()
        runs, total = current.state().runs.page(**args)
        return render_template("_runs_list.html", **list_view(runs, total, args), notice=(message, category))
    flash(message, category)
    query = {k: request.args[k] for k in ("status", "user", "limit", "offset") if request.args.get(k)}
    return redirect(url_for("runs.index", **query), code=303)
