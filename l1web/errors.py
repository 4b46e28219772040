"""Domain exceptions, each carrying the HTTP status it maps to, and their one HTTP mapping.

Domain code raises these; `init_app` turns them (and werkzeug's HTTP errors) into JSON
`{"error", "message"}` for API clients and an HTML error page for browsers. No traceback ever
reaches a user.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: How a reachable Redis refuses writes: out of memory under `noeviction` and a read-only replica
#: (redis-py gives these their own classes), snapshots failing (`stop-writes-on-bgsave-error`)
#: and too few replicas (plain errors with these prefixes).
REDIS_REFUSING_CLASSES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
REDIS_REFUSING_PREFIXES = ("MISCONF", "NOREPLICAS", "OOM", "READONLY")
#: Seconds between two log lines about Redis refusing writes (one alert, not one per request).
REFUSAL_LOG_INTERVAL = 60.0


class L1Error(Exception):
    """Base of every error a user may see; `status` is the HTTP status, `code` a short name."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(L1Error):
    status, code = 400, "bad_request"


class InvalidHash(BadRequest):
    code = "invalid_hash"


class NotFound(L1Error):
    status, code = 404, "not_found"


class Forbidden(L1Error):
    status, code = 403, "forbidden"


class Unauthorized(L1Error):
    status, code = 401, "unauthorized"


class Conflict(L1Error):
    status, code = 409, "conflict"


class PayloadTooLarge(L1Error):
    status, code = 413, "payload_too_large"


class UnsupportedMedia(L1Error):
    status, code = 415, "unsupported_media"


class Unprocessable(L1Error):
    status, code = 422, "unprocessable"


class TooManyRequests(L1Error):
    status, code = 429, "rate_limited"


class InsufficientStorage(L1Error):
    status, code = 507, "insufficient_storage"


class Unavailable(L1Error):
    status, code = 503, "unavailable"


class BadGateway(L1Error):
    """An upstream service (L2) answered something unusable."""

    status, code = 502, "bad_gateway"


class GatewayTimeout(L1Error):
    """An upstream service (L2) did not answer in time."""

    status, code = 504, "gateway_timeout"


class CorruptItem(L1Error):
    """A stored file's bytes no longer match its name; it has been quarantined."""

    status, code = 410, "corrupt"


def wants_json() -> bool:
    """API clients get JSON: non-browser Accept headers, JSON bodies, and the API URL space."""
    if request.is_json or request.headers.get("Authorization", "").startswith("Bearer "):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best != "text/html" or request.accept_mimetypes["application/json"] > \
        request.accept_mimetypes["text/html"]


def error_response(status: int, code: str, message: str, /, **details: object) -> Response:
    if wants_json() and not request.headers.get("HX-Request"):
        body = {"error": code, "message": message}
        body.update({k: v for k, v in details.items() if v is not None})
        response = jsonify(body)
    else:
        template = "_error.html" if request.headers.get("HX-Request") else "error.html"
        response = Response(render_template(template, status=status, code=code, message=message))
    response.status_code = status
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
