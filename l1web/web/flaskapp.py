"""The Flask application class of L1, with two per-request costs of Flask's own taken out.

Every request, an API call or a status poll as much as a page, paid for work whose answer does
not change between requests (issue 19; measured in docs/performance.md, "Session 29"):

- Flask's signed-cookie session built its signer (an itsdangerous serializer: key list, salt,
  hash) before even looking for the cookie. L1 keeps only flash messages there, so almost no
  request carries that cookie: the session is now opened empty without a signer when the cookie is
  absent, and the signer is built once per set of keys (`SECRET_KEY` and its fallbacks) rather
  than once per request. Reading and writing a session that exists is Flask's own code.
- `Flask.ensure_sync` asked `inspect.iscoroutinefunction` of every hook and view on every request
  (nine times for `GET /healthz`); for plain functions the answer is remembered.
"""

from __future__ import annotations

import threading
import types
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions: no signer for a request without the cookie, one signer per keys."""

    def __init__(self) -> None:
        self._signer: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] = ((), None)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        made_for, signer = self._signer  # one read: another thread may replace the pair meanwhile
        if made_for != keys:
            signer = super().get_signing_serializer(app)
            self._signer = (keys, signer)
        return signer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what Flask answers then, without building the signer
        return super().open_session(app, request)


class L1Flask(Flask):
    """Flask, with `CookieSessions` and `ensure_sync`'s answer remembered for plain functions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_interface = CookieSessions()  # one per app: each has its own keys
        self._sync: dict[types.FunctionType, Any] = {}
        self._sync_lock = threading.Lock()

    def ensure_sync(self, func: Any) -> Any:
        if type(func) is not types.FunctionType:  # bound methods, partials: asked each time, as Flask does
            return super().ensure_sync(func)
        known = self._sync.get(func)
        if known is None:
            known = super().ensure_sync(func)
            with self._sync_lock:
                self._sync[func] = known
        return known
