"""Whether a request came from htmx: flask-htmx's reading of the `HX-Request` header, in one place."""

from __future__ import annotations

from flask import Flask
from flask_htmx import HTMX

htmx = HTMX()


def init_app(app: Flask) -> None:
    htmx.init_app(app)


def is_htmx() -> bool:
    """True for a request htmx made (`HX-Request: true`): it wants a fragment, not a page."""
    return bool(htmx)
