"""Who is asking: a session cookie or `Authorization: Bearer`, checked against revocations.

Every request that carries credentials reads Redis once: the session and the revocation of the
token behind it in one Lua call, or a Bearer token's revocation and cached verification in one
pipeline. A Redis error propagates (→ 503); it is never taken as "not revoked".
"""

from __future__ import annotations

import copy
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from flask import Response, g, request

from l1web.auth import l2, sealed
from l1web.auth.ratelimit import rate_limit
from l1web.auth.tokens import checked_token, token_hash
from l1web.errors import Unauthorized
from l1web.state.tokens import Session, Verified
from l1web.users import User
from l1web.web import current

log = logging.getLogger(__name__)

#: Bytes of randomness in a session id (256 bits).
SESSION_ID_BYTES = 32
#: Cookie name over plain http (development); `__Host-` needs Secure, so https only.
COOKIE = "l1_session"
#: Cookie name under https: the prefix pins it to our host, path `/` and Secure.
SECURE_COOKIE = "__Host-l1_session"
#: Seconds in the fixed window of the sign-in rate limits.
AUTH_WINDOW = 60


class Via(StrEnum):
    COOKIE = "cookie"
    BEARER = "bearer"


@dataclass(frozen=True)
class Auth:
    """How this request is signed in."""

    username: str
    token_hash: str
    via: Via
    session_hash: str | None = None


def secure() -> bool:
    return current.settings().l1_public_url.startswith("https://")


def cookie_name() -> str:
    return SECURE_COOKIE if secure() else COOKIE


def current_auth() -> Auth | None:
    return g.get("auth")


def _sign_in(auth: Auth) -> None:
    g.auth = auth
    g.user = User(auth.username, auth.username in current.settings().admin_users)


def authenticate_token(token: str) -> tuple[str, Verified]:
    """(hash, what L2 vouched for) of a token; 400 malformed, 401 invalid or revoked."""
    token = checked_token(token)
    digest = token_hash(token)
    revoked, verified = current.state().tokens.revoked_or_cached(digest)  # one round trip
    if revoked:
        raise Unauthorized("This token has been revoked; sign in again.")
    if verified is None:
        verified = _verify_once(token, digest)
    return digest, verified


def _verify_once(token: str, digest: str) -> Verified:
    """Concurrent requests with one token ask L2 once: the others wait and share its outcome.

    Sharing a failure matters as much as sharing a success: with L2 slow or down, requests
    that retried one after another would each wait out the timeout in turn.
    """
    with _one_flight(digest) as flight:
        if flight.failure is not None:
            raise copy.copy(flight.failure)
        verified = current.state().tokens.cached(digest)
        if verified is None:
            try:
                verified = _verify_with_l2(token, digest)
            except Exception as exc:
                flight.failure = exc
                raise
        return verified


def _verify_with_l2(token: str, digest: str) -> Verified:
    settings = current.settings()
    # Every unseen token costs an L2 call; cap them per address so L1 is no amplifier.
    rate_limit(f"verify:addr:{request.remote_addr}", settings.auth_rate_limit, AUTH_WINDOW)
    server = l2.pick_l2(token, settings.l2_servers)
    try:
        verified = l2.verify(server, token, settings.l1_public_url, settings.l2_timeout)
    except l2.Invalid as exc:
        log.info("token refused by L2: %s", exc)
        raise Unauthorized("This token is not valid on this server; sign in again.") from exc
    current.state().tokens.remember(digest, verified)
    return verified


@dataclass
class _Flight:
    """The verification of one token in this process, and the requests waiting on it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    failure: Exception | None = None


#: Token hash → its verification in flight; an entry lives while any request holds it.
_in_flight: dict[str, _Flight] = {}
_in_flight_guard = threading.Lock()


@contextmanager
def _one_flight(digest: str) -> Iterator[_Flight]:
    with _in_flight_guard:
        flight = _in_flight.setdefault(digest, _Flight())
        flight.waiting += 1
    try:
        with flight.lock:
            yield flight
    finally:
        with _in_flight_guard:
            flight.waiting -= 1
            if flight.waiting == 0:
                del _in_flight[digest]


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def load_user() -> None:
    """Before every request: set `g.user` (and `g.auth`) from Bearer or the session cookie."""
    # Reset explicitly: under pytest-flask one app context (and `g`) spans many requests.
    g.user, g.auth, g.drop_cookie = None, None, False
    if request.endpoint == "static":
        return
    token = bearer_token()
    if token is not None:
        digest, verified = authenticate_token(token)
        _sign_in(Auth(verified.username, digest, Via.BEARER))
        return
    session_id = request.cookies.get(cookie_name())
    if not session_id:
        return
    session_hash = _session_hash(session_id)
    session = current.state().tokens.live_session(session_hash)  # one round trip: session + revocation
    if session is None:
        g.drop_cookie = True
        return
    _sign_in(Auth(session.username, session.token_hash, Via.COOKIE, session_hash))


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(digest: str, verified: Verified) -> tuple[str, int]:
    """A new session for a verified token, ending the request's old one: (id, seconds to live)."""
    end_session()
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    ttl = min(current.settings().session_ttl, verified.expires_at - int(time.time()))
    current.state().tokens.start_session(_session_hash(session_id), Session(verified.username, digest), ttl)
    return session_id, ttl


def end_session() -> None:
    """Forget the session this request's cookie names (whatever its state)."""
    session_id = request.cookies.get(cookie_name())
    if session_id:
        current.state().tokens.end_session(_session_hash(session_id))
        sealed.forget(session_id)


def set_cookie(response: Response, session_id: str, ttl: int) -> None:
    response.set_cookie(cookie_name(), session_id, max_age=ttl, path="/", secure=secure(),
                        httponly=True, samesite="Lax")


def drop_cookie(response: Response) -> Response:
    response.delete_cookie(cookie_name(), path="/", secure=secure(), httponly=True, samesite="Lax")
    return response
