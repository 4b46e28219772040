"""The sign-in hooks of the web app: before every request the user is loaded (`g.user`), then the
guard and the CSRF check run; private paths get no-store and a strict Referrer-Policy."""

from __future__ import annotations

from flask import Flask, Response, g, request

from l1web.auth.csrf import check_csrf
from l1web.auth.guard import require_sign_in
from l1web.auth.redact import install_log_redaction
from l1web.auth.sessions import drop_cookie, load_user

#: Paths whose responses must not be cached or leak a Referer (they carry or set credentials).
PRIVATE_PREFIXES = ("/auth", "/logout", "/login")
#: Referrer policy per private prefix. `/auth` has the token in its URL: no Referer at all. The
#: /login and /logout pages hold forms (sign out); under `no-referrer` a browser posts them with
#: `Origin: null`, which the CSRF check refuses, so they send a Referer to this origin only.
REFERRER_POLICY = {"/auth": "no-referrer", "/logout": "same-origin", "/login": "same-origin"}


def init_app(app: Flask) -> None:
    app.before_request(load_user)
    app.before_request(require_sign_in)
    app.before_request(check_csrf)
    app.after_request(_after)
    install_log_redaction()


def _after(response: Response) -> Response:
    if request.path.startswith(PRIVATE_PREFIXES):
        prefix = next(p for p in PRIVATE_PREFIXES if request.path.startswith(p))
        response.headers["Referrer-Policy"] = REFERRER_POLICY[prefix]
        response.headers["Cache-Control"] = "no-store"
    if g.get("drop_cookie"):
        drop_cookie(response)
    return response

