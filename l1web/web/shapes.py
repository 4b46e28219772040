"""The JSON shape of a run, as every route that answers with one gives it (runs, recipes)."""

from __future__ import annotations

from flask import Response, jsonify

from l1web.runs.progress import run_progress
from l1web.web import current

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


def run_response(run: dict, status: int = 200) -> tuple[Response, int]:
    """A run with its steps, as the API returns it after any change."""
    return jsonify(run_json(run, current.runs().steps_view(run["id"]))), status
