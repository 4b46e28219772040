"""CSRF protection for cookie-authenticated state changes.

A cross-site request is refused by its `Sec-Fetch-Site` or `Origin`; a signed-in browser must
also send the session's CSRF token: header `X-CSRF-Token` (htmx sends it from `base.html`), or
form field `csrf_token` in a urlencoded form, or — for multipart uploads, whose body L1 streams
and never parses here — the `csrf_token` query parameter. Bearer calls carry no ambient
credential, so they are exempt.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import current_app, request

from l1web.auth.sessions import Via, current_auth
from l1web.errors import Forbidden
from l1web.web import current

#: Methods that never change state (T9: mutating routes accept none of them).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: `Sec-Fetch-Site` values of requests our own pages (or the user, typing) made.
OWN_SITES = frozenset({"same-origin", "none"})
#: Header and form field carrying the token.
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"


def csrf_token() -> str:
    """The current session's CSRF token ("" when not signed in by cookie); for templates."""
    auth = current_auth()
    if auth is None or auth.session_hash is None:
        return ""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"csrf:{auth.session_hash}".encode(), hashlib.sha256).hexdigest()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _sent_token() -> str:
    if header := request.headers.get(HEADER):
        return header
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.get(FIELD, "")
    if request.mimetype == "multipart/form-data":
        return request.args.get(FIELD, "")
    return ""


def check_csrf() -> None:
    """Before every request: refuse cross-site state changes and cookie ones without the token."""
    auth = current_auth()
    if request.method in SAFE_METHODS or (auth is not None and auth.via is Via.BEARER):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in OWN_SITES:
        raise Forbidden("Cross-site requests may not change anything here.")
    origin = request.headers.get("Origin")
    allowed = {_origin(current.settings().l1_public_url), _origin(request.host_url)}
    if origin is not None and origin.lower() not in allowed:
        raise Forbidden("Cross-origin requests may not change anything here.")
    if auth is not None:
        expected = csrf_token()
        if not hmac.compare_digest(_sent_token().encode(), expected.encode()):
            raise Forbidden("The page expired (missing or wrong CSRF token); reload it and try again.")
