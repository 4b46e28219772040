"""Sign-in routes: `/login`, `/auth` (token from L2 → session), revocation, `/logout`."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from flask import Blueprint, flash, jsonify, redirect, render_template, request

from l1web.auth import sealed
from l1web.auth import sessions as auth_sessions
from l1web.auth.csrf import csrf_token
from l1web.auth.ratelimit import rate_limit
from l1web.auth.redirects import safe_next
from l1web.auth.sessions import AUTH_WINDOW, Via, current_auth
from l1web.auth.tokens import MAX_TOKEN_LENGTH, TOKEN_PATTERN, checked_token, is_username, token_hash
from l1web.errors import BadRequest, Unauthorized
from l1web.web import current
from l1web.web.current import signed_in

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

#: Most tokens one `/auth/revoke-user` call may carry.
MAX_PROOF_TOKENS = 50
#: Largest `/auth/revoke-user` body, in bytes (fits MAX_PROOF_TOKENS tokens).
MAX_REVOKE_BODY_BYTES = 128 * 1024
#: Path of the page on L2 where users attach renderers.
L2_RENDERERS_PATH = "/renderers"


@bp.get("/login")
def login():
    settings = current.settings()
    next_path = safe_next(request.args.get("next"))
    l2_link = None
    if settings.l2_servers:
        query = urlencode({"l1": settings.l1_public_url, "next": next_path})
        l2_link = f"{settings.l2_servers[0]}{L2_RENDERERS_PATH}?{query}"
    return render_template("login.html", l2_link=l2_link, l2=settings.l2_servers[:1], next=next_path,
                           l1_url=settings.l1_public_url,
                           user=current.user())


@bp.get("/auth")
def auth():
    """Exchange the token L2 put in the URL for a session, then 303 to a clean local URL."""
    token = checked_token(request.args.get("auth_token"))
    settings = current.settings()
    rate_limit(f"auth:addr:{request.remote_addr}", settings.auth_rate_limit, AUTH_WINDOW)
    digest, verified = auth_sessions.authenticate_token(token)
    rate_limit(f"auth:user:{verified.username}", settings.auth_rate_limit, AUTH_WINDOW)
    session_id, ttl = auth_sessions.start_session(digest, verified)
    sealed.keep(session_id, token, ttl)  # so publishing to L2 can act for this browser user
    log.info("signed in %s through L2 (session cookie)", verified.username)
    response = redirect(safe_next(request.args.get("next")), 303)
    auth_sessions.set_cookie(response, session_id, ttl)
    return response


@bp.get("/auth/whoami")
def whoami():
    """The signed-in user, and the CSRF token a cookie session sends on state changes."""
    user = signed_in()
    auth = current_auth()
    return jsonify({"username": user.name, "is_admin": user.is_admin,
                    "via": auth.via.value if auth else None, "csrf_token": csrf_token() or None})


@bp.post("/auth/revoke")
def revoke():
    """Revoke one token: the one in the body (holding it is the right), else this request's own."""
    try:
        body = request.get_json(silent=True) if request.is_json else request.form
    except RecursionError:  # `silent` covers ValueError only
        body = None
    if request.is_json and not isinstance(body, dict):
        raise BadRequest('Send JSON {"token": "..."}, or no body to revoke the token of this request.')
    token = (body or {}).get("token")
    if token is not None:
        digest, verified = auth_sessions.authenticate_token(str(token))
        username = verified.username
    else:
        auth = current_auth()
        if auth is None:
            raise Unauthorized("Send the token to revoke, or sign in.")
        digest, username = auth.token_hash, auth.username
    current.state().tokens.revoke(digest, username)
    response = jsonify({"revoked": True})
    auth = current_auth()
    if auth is not None and auth.via is Via.COOKIE and auth.token_hash == digest:
        auth_sessions.end_session()
        auth_sessions.drop_cookie(response)
    return response


@bp.post("/auth/revoke-user")
def revoke_user():
    """L2 (at logout) revokes every token of a user; it proves itself with a live one of them.

    Tokens already revoked prove nothing new: a replayed call answers 200 and revokes nothing,
    so it cannot sign the user out of sessions started since.
    """
    rate_limit(f"auth:addr:{request.remote_addr}", current.settings().auth_rate_limit, AUTH_WINDOW)
    username, hashes = _revoke_user_request()
    tokens = current.state().tokens
    if any(tokens.is_live(digest, username) for digest in hashes):
        count = tokens.revoke_user(username)
        log.info("revoked %d token(s) of %s at L2's request", count, username)
        return jsonify({"revoked": count})
    if any(tokens.revoked_for(digest) == username for digest in hashes):
        return jsonify({"revoked": 0})
    log.warning("refused revoke-user for %s: no token of theirs was presented", username)
    raise Unauthorized("None of these tokens is one this server accepted for that user.")


def _is_token(text: str) -> bool:
    """Could be a token: short, printable ASCII (a lone surrogate would not even hash)."""
    return len(text) <= MAX_TOKEN_LENGTH and TOKEN_PATTERN.fullmatch(text) is not None


def _revoke_user_request() -> tuple[str, list[str]]:
    raw = request.stream.read(MAX_REVOKE_BODY_BYTES + 1)
    if len(raw) > MAX_REVOKE_BODY_BYTES:
        raise BadRequest("That request is too large.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    proofs = body.get("tokens") if isinstance(body, dict) else None
    if not is_username(username) or not isinstance(proofs, list) or not 0 < len(proofs) <= MAX_PROOF_TOKENS:
        raise BadRequest('Send JSON {"username": ..., "tokens": [one or more of the user\'s tokens]}.')
    hashes = [token_hash(p) for p in proofs if isinstance(p, str) and _is_token(p)]
    return username, hashes


@bp.get("/logout")
def logout_page():
    return render_template("auth_logout.html", user=current.user())


@bp.post("/logout")
def logout():
    """End this browser's session and revoke its token here (L2 sessions are L2's business)."""
    auth = current_auth()
    if auth is not None and auth.via is Via.COOKIE:
        current.state().tokens.revoke(auth.token_hash, auth.username)
    auth_sessions.end_session()
    flash("You are signed out of this renderer.")
    return auth_sessions.drop_cookie(redirect("/", 303))
