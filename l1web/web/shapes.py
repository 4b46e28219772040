"""A run and a page of runs as routes answer them: a run's JSON (runs, recipes, batches) and the runs
list's query and view (the runs pages and the bulk actions that redraw the list)."""

from __future__ import annotations

from flask import Response, jsonify, request, url_for

from l1web.errors import BadRequest
from l1web.runs.progress import run_progress
from l1web.status import RunStatus
from l1web.web import current
from l1web.web.requests import owner_arg, paging

#: Runs per page of a listing unless the client asks for another number.
PAGE_SIZE = 50
#: Every run status, as the text a query may filter on.
STATUSES = frozenset(s.value for s in RunStatus)
#: Run fields given as numbers in the JSON API (Redis stores them as text).
NUMBER_FIELDS = {"created": float, "started": float, "finished": float, "attempt": int, "steps_total": int}


def run_json(run: dict, steps: list[dict] | None = None) -> dict:
    out = {k: v for k, v in run.items() if k not in ("recipe", "force")}
    for name, kind in NUMBER_FIELDS.items():
        out[name] = kind(run[name]) if run.get(name) not in (None, "") else None
    out["published"] = run.get("published") == "1"
    run_id = run["id"]
    out["links"] = {"self": f"/runs/{run_id}", "page": f"/run/{run_id}",
                    "provenance": f"/runs/{run_id}/provenance",
                    "output": f"/cache/{run['output_hash']}" if run.get("output_hash") else None}
    if steps is not None:
        out["steps"] = steps
        out["progress"] = run_progress(run, steps)
    return out


def run_response(run: dict, status: int = 200, steps: list[dict] | None = None) -> tuple[Response, int]:
    """A run with its steps, as the API returns it after any change (`steps` when the caller
    knows them: a run just created has none yet, so its answer reads nothing more)."""
    return jsonify(run_json(run, current.runs().steps_view(run["id"]) if steps is None else steps)), status


# The runs list ------------------------------------------------------------------------------------
def list_args() -> dict:
    """`status`, `user`, `offset`, `limit` from the query; non-admins only ever see their own."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"unknown status {status[:32]!r}; one of: {', '.join(RunStatus)}", field="status")
    asked = paging(PAGE_SIZE)
    return {"status": status, "user": owner_arg("user"), "offset": asked.offset, "limit": asked.limit}


def listing_url(endpoint: str, offset: int) -> str:
    """A link to the same listing (status, admin's user filter, explicit limit) at `offset`."""
    query = {k: request.args[k] for k in ("status", "user", "limit") if request.args.get(k)}
    return url_for(endpoint, **query, **({"offset": offset} if offset > 0 else {}))


def list_view(runs: list[dict], total: int, args: dict) -> dict:
    """What `_runs_list.html` shows: the page of runs, and links to the pages around it."""
    offset, limit = args["offset"], args["limit"]
    return {
        "runs": runs, "total": total, "status": args["status"], "offset": offset,
        "live": any(RunStatus(r["status"]).live for r in runs),
        "fragment_url": listing_url("runs.list_fragment", offset),
        "previous_url": listing_url("runs.index", max(offset - limit, 0)) if offset else None,
        "next_url": listing_url("runs.index", offset + limit) if offset + limit < total else None,
    }
