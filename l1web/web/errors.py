"""The one HTTP mapping of errors: domain exceptions, werkzeug's HTTP errors and Redis outages.

JSON `{"error", "message"}` for API clients and an HTML error page (or fragment, for htmx) for
browsers. No traceback ever reaches a user.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from l1web.errors import L1Error
from l1web.web.htmx import is_htmx

log = logging.getLogger(__name__)

#: How a reachable Redis refuses writes: out of memory under `noeviction` and a read-only replica
#: (redis-py gives these their own classes), snapshots failing (`stop-writes-on-bgsave-error`)
#: and too few replicas (plain errors with these prefixes).
REDIS_REFUSING_CLASSES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
REDIS_REFUSING_PREFIXES = ("MISCONF", "NOREPLICAS", "OOM", "READONLY")
#: Seconds between two log lines about Redis refusing writes (one alert, not one per request).
REFUSAL_LOG_INTERVAL = 60.0


def wants_json() -> bool:
    """API clients get JSON: non-browser Accept headers, JSON bodies, and the API URL space."""
    if request.is_json or request.headers.get("Authorization", "").startswith("Bearer "):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best != "text/html" or request.accept_mimetypes["application/json"] > \
        request.accept_mimetypes["text/html"]


def error_response(status: int, code: str, message: str, /, **details: object) -> Response:
    if wants_json() and not is_htmx():
        body = {"error": code, "message": message}
        body.update({k: v for k, v in details.items() if v is not None})
        response = jsonify(body)
    else:
        template = "_error.html" if is_htmx() else "error.html"
        response = Response(render_template(template, status=status, code=code, message=message))
    response.status_code = status
    if status == 429:  # every 429 says when to come back, in the header as well as the body
        response.headers["Retry-After"] = str(max(1, int(details.get("retry_after") or 1)))
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(L1Error)
    def _domain(exc: L1Error) -> Response:
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.error("redis unreachable: %s", exc)
        return error_response(503, "unavailable", "The state store (Redis) is unreachable; try again shortly.")

    @app.errorhandler(redis.exceptions.ResponseError)
    def _redis_refusing(exc: redis.exceptions.ResponseError) -> Response:
        if not isinstance(exc, REDIS_REFUSING_CLASSES) and not str(exc).startswith(REDIS_REFUSING_PREFIXES):
            return _unexpected(exc)
        _refusals.note(f"{type(exc).__name__}: {exc}")
        return error_response(503, "unavailable",
                              "The state store (Redis) is refusing writes right now; try again shortly.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Something went wrong on the server; it has been logged.")


class _RefusalLog:
    """Logs Redis refusing writes once per `REFUSAL_LOG_INTERVAL`, with how often it happened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = -REFUSAL_LOG_INTERVAL
        self.suppressed = 0

    def note(self, message: str) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.last < REFUSAL_LOG_INTERVAL:
                self.suppressed += 1
                return
            self.last, suppressed, self.suppressed = now, self.suppressed, 0
        log.error("redis refuses writes: %s (%d more since the last report)", message, suppressed)


_refusals = _RefusalLog()
