"""The development L2's routes: password sign-in, Renderers + Attach, verify, revoke, logout."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import urlencode

import requests
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from devl2.config import Config
from devl2.issuer import Issued, Issuer
from devl2.publications import Publications

log = logging.getLogger(__name__)
bp = Blueprint("devl2", __name__)
EXTENSION = "devl2"
#: Largest JSON body accepted by the API routes, in bytes.
MAX_JSON_BYTES = 16 * 1024
#: Largest publication accepted, in bytes (a provenance record lists every step).
MAX_PUBLISH_BYTES = 1024 * 1024
#: A content hash or run id: 64 lower-case hex digits.
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class DevL2:
    """The app's long-lived objects; `config` may be replaced (tests allow more L1s)."""

    config: Config
    issuer: Issuer
    publications: Publications


def create_app(config: Config) -> Flask:
    app = Flask(__name__)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app.config.update(SECRET_KEY=secrets.token_urlsafe(32), SESSION_COOKIE_NAME="devl2_session",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      MAX_CONTENT_LENGTH=MAX_JSON_BYTES)
    app.extensions[EXTENSION] = DevL2(config, Issuer(config.data_dir, config.public_url),
                                       Publications(config.data_dir))
    app.register_blueprint(bp)
    app.context_processor(lambda: {"csrf_token": _csrf_token, "user": session.get("user")})
    app.jinja_env.filters["utc"] = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return app


def dev_l2() -> DevL2:
    return current_app.extensions[EXTENSION]


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
        abort(403, "The form expired; reload the page and try again.")


def _local(path: str | None) -> str | None:
    """`path` if it is a plain local path (no scheme, host or backslash), else None."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return None


def signed_in(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not session.get("user"):
            return redirect(url_for("devl2.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


# Pages ---------------------------------------------------------------------------------------
@bp.get("/")
def index():
    return redirect(url_for("devl2.renderers"))


@bp.get("/healthz")
def healthz():
    return {"ok": True}


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        _check_csrf()
        name = request.form.get("username", "")
        password = dev_l2().config.users.get(name)
        if password is not None and hmac.compare_digest(password, request.form.get("password", "")):
            session.clear()
            session["user"] = name
            return redirect(_local(request.form.get("next")) or url_for("devl2.renderers"), 303)
        error = "Unknown user or wrong password."
    return render_template("login.html", error=error, next=_local(request.args.get("next")) or "",
                           users=sorted(dev_l2().config.users)), 401 if error else 200


@bp.get("/renderers")
@signed_in
def renderers():
    ext = dev_l2()
    wanted = request.args.get("l1", "").rstrip("/")
    return render_template("renderers.html", l1_urls=ext.config.l1_urls, wanted=wanted,
                           next=_local(request.args.get("next")) or "",
                           tokens=ext.issuer.live_tokens(session["user"]))


@bp.post("/renderers/attach")
@signed_in
def attach():
    _check_csrf()
    ext = dev_l2()
    l1 = request.form.get("l1", "").rstrip("/")
    if l1 not in ext.config.l1_urls:
        abort(400, "That renderer is not one this L2 knows.")
    token = ext.issuer.mint(session["user"], l1, ext.config.token_ttl)
    query = {"auth_token": token}
    if next_path := _local(request.form.get("next")):
        query["next"] = next_path
    return redirect(f"{l1}/auth?{urlencode(query)}", 303)


@bp.post("/tokens/<jti>/revoke")
@signed_in
def revoke_own(jti: str):
    _check_csrf()
    if dev_l2().issuer.revoke(jti, session["user"]):
        flash("Token revoked.")
    return redirect(url_for("devl2.renderers"), 303)


@bp.post("/logout")
def logout():
    _check_csrf()
    user = session.get("user")
    session.clear()
    if user:
        notified = notify_logout(user)
        dev_l2().issuer.revoke_user(user)
        flash(f"Signed out; {notified} renderer(s) told to forget your tokens.")
    return redirect(url_for("devl2.login"), 303)


# API -----------------------------------------------------------------------------------------
@bp.post("/auth/verify")
def verify():
    body = request.get_json(silent=True) or {}
    token, l1 = body.get("token"), body.get("l1")
    if not isinstance(token, str) or not isinstance(l1, str):
        return jsonify({"valid": False, "reason": "bad_request"}), 400
    return jsonify(dev_l2().issuer.verify(token, l1).as_json())


@bp.post("/auth/revoke")
def revoke():
    """Revoke the token in the body; holding a token is the right to revoke it."""
    body = request.get_json(silent=True) or {}
    token = body.get("token")
    issued = dev_l2().issuer.decode(token) if isinstance(token, str) else None
    if issued is None:
        return jsonify({"revoked": False, "reason": "invalid"}), 400
    dev_l2().issuer.revoke(issued.jti)
    return jsonify({"revoked": True})


def notify_logout(username: str) -> int:
    """POST `/auth/revoke-user` to every L1 holding a live token of the user; count the 200s."""
    ext = dev_l2()
    by_l1: dict[str, list[Issued]] = {}
    for issued in ext.issuer.live_tokens(username):
        by_l1.setdefault(issued.aud, []).append(issued)
    done = 0
    for l1, issued in by_l1.items():
        body = {"username": username, "tokens": [ext.issuer.token_for(item) for item in issued]}
        try:
            answer = requests.post(f"{l1}/auth/revoke-user", json=body, timeout=ext.config.call_timeout,
                                   allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("could not tell %s that %s signed out: %s", l1, username, type(exc).__name__)
            continue
        done += answer.status_code == 200
    return done


# Publishing (L1 → L2) -------------------------------------------------------------------------
def _api_error(status: int, code: str, message: str):
    return jsonify({"error": code, "message": message}), status


@bp.post("/publish")
def publish():
    """Record a run's output published from an L1, for the user whose L1-scoped token is Bearer."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _api_error(401, "unauthorized", "send the user's L1-scoped token as Authorization: Bearer")
    request.max_content_length = MAX_PUBLISH_BYTES
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("l1"), str):
        return _api_error(400, "bad_request", "the body must be a JSON object naming its 'l1'")
    verdict = dev_l2().issuer.verify(token.strip(), body["l1"])
    if not verdict.valid:
        return _api_error(401, "unauthorized", f"the token is not valid for that L1 ({verdict.reason})")
    run_id, output, provenance = body.get("run_id"), body.get("output_hash"), body.get("provenance")
    name = body.get("output_name") or ""
    if not isinstance(run_id, str) or not HEX64.fullmatch(run_id):
        return _api_error(400, "bad_request", "'run_id' must be 64 hex digits")
    if not isinstance(output, str) or not HEX64.fullmatch(output):
        return _api_error(400, "bad_request", "'output_hash' must be 64 hex digits")
    if not isinstance(provenance, dict) or not isinstance(name, str):
        return _api_error(400, "bad_request", "'provenance' must be an object and 'output_name' text")
    said = (provenance.get("output") or {}).get("content_hash") if isinstance(provenance.get("output"), dict) \
        else None
    if said is not None and said != output:
        return _api_error(400, "bad_request", "the provenance names another output than 'output_hash'")
    ext = dev_l2()
    record, created = ext.publications.add(verdict.username, verdict.l1, run_id, output_hash=output,
                                           output_name=name[:256], provenance=provenance)
    log.info("published %s from %s for %s", output[:12], verdict.l1, verdict.username)
    return jsonify(record.as_json(ext.config.public_url)), 201 if created else 200


@bp.get("/published")
def published():
    ext = dev_l2()
    items = ext.publications.all()
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"published": [p.as_json(ext.config.public_url) for p in items]})
    return render_template("published.html", items=items)


@bp.get("/published/<int:publication_id>")
def published_item(publication_id: int):
    ext = dev_l2()
    record = ext.publications.get(publication_id)
    if record is None:
        abort(404)
    return jsonify({**record.as_json(ext.config.public_url), "provenance": record.provenance})
