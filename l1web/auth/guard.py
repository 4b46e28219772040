"""The global guard: anonymous users reach only public pages; everything else needs sign-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlencode

from flask import Response, current_app, g, redirect, request

from l1web.errors import Unauthorized
from l1web.web.errors import wants_json
from l1web.web.htmx import is_htmx

#: Paths anyone may open.
PUBLIC_PATHS = frozenset({
    "/", "/login", "/logout", "/auth", "/healthz", "/readyz", "/openapi.json", "/docs",
    "/download/client", "/favicon.ico",
})
#: Path prefixes anyone may open (static files, the sign-in API).
PUBLIC_PREFIXES = ("/static/", "/auth/", "/docs/")


View = TypeVar("View", bound=Callable)


def public(view: View) -> View:
    """Mark a view anyone may open (for public pages outside `PUBLIC_PATHS`)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def is_public(path: str) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return getattr(current_app.view_functions.get(request.endpoint or ""), "is_public", False)


def require_sign_in() -> Response | None:
    """Before every request: 401 for API clients, a redirect to /login for browsers."""
    if g.get("user") is not None or request.url_rule is None or is_public(request.path):
        return None  # unrouted paths fall through to their 404/405
    target = request.full_path.rstrip("?")
    login = f"/login?{urlencode({'next': target})}"
    if is_htmx():
        response = Response(status=401)
        response.headers["HX-Redirect"] = login
        return response
    if request.method in ("GET", "HEAD") and not wants_json():
        return redirect(login, 302)
    raise Unauthorized("Sign in first: open /login in a browser, or send Authorization: Bearer <token>.")
