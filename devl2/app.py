"""The development L2's routes: password sign-in, Renderers + Attach, verify, revoke, logout."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)
bp = Blueprint("devl2", __name__)
EXTENSION = "devl2"
#: Largest JSON body accepted by the API routes, in bytes.
MAX_JSON_BYTES = 16 * 1024


@dataclass
class DevL2:
    """The app's long-lived objects; `config` may be replaced (tests allow more L1s)."""

    config: Config
    issuer: Issuer
    #: Requests served, by path: tests assert that L1 called (or did not call) L2.
    calls: Counter[str] = field(default_factory=Counter)
    _calls_lock: threading.Lock = field(default_factory=threading.Lock)

    def count_call(self, path: str) -> None:
        with self._calls_lock:
            self.calls[path] += 1


def create_app(config: Config) -> Flask:
    app = Flask(__name__)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app.config.update(SECRET_KEY=secrets.token_urlsafe(32), SESSION_COOKIE_NAME="devl2_session",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      MAX_CONTENT_LENGTH=MAX_JSON_BYTES)
    app.extensions[EXTENSION] = DevL2(config, Issuer(config.data_dir, config.public_url))
    app.register_blueprint(bp)
    app.before_request(lambda: dev_l2().count_call(request.path))
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
