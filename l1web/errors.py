"""Domain exceptions, each carrying the HTTP status it maps to (plain class data, no web framework).

Domain code raises these; `l1web.web.errors.init_app` turns them (and werkzeug's HTTP errors)
into JSON `{"error", "message"}` for API clients and an HTML error page for browsers.
"""

from __future__ import annotations


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
