"""Publishing to L2: `POST /runs/<id>/publish` (JSON) and the run page's Publish button.

The token sent to L2 is the caller's own: the Bearer token of an API call, or, for a browser,
the session's token unsealed with the cookie (l1web/auth/sealed.py). See l1web/runs/l2_publish.py.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request, url_for

from l1web.auth import sealed
from l1web.auth.sessions import Via, bearer_token, cookie_name, current_auth
from l1web.errors import L1Error
from l1web.runs.l2_publish import publish
from l1web.web import current
from l1web.web.current import signed_in

bp = Blueprint("publish", __name__)


def _token() -> str | None:
    auth = current_auth()
    if auth is None:
        return None
    if auth.via is Via.BEARER:
        return bearer_token()
    session_id = request.cookies.get(cookie_name())
    return sealed.unseal(session_id) if session_id else None


def _publish(run_id: str) -> tuple[dict, bool]:
    return publish(current.runs(), current.settings(), run_id, signed_in(), _token())


@bp.post("/runs/<run_id>/publish")
def publish_api(run_id: str):
    publication, created = _publish(run_id)
    return jsonify(publication), 201 if created else 200


@bp.post("/run/<run_id>/publish")
def publish_page(run_id: str):
    """The run page's button (a form with the CSRF token): publish, then back to the page."""
    try:
        publication, created = _publish(run_id)
    except L1Error as exc:
        if exc.status == 404:
            raise
        flash(f"Not published: {exc.message}", "error")
        return redirect(url_for("runs.page", run_id=run_id), code=303)
    where = publication.get("l2_url") or publication.get("l2")
    flash(f"Published to L2 ({where})." if created else "Already published to L2.", "info")
    return redirect(url_for("runs.page", run_id=run_id), code=303)
