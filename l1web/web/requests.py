"""What routes read from a request, one way each: a JSON body, a listing's page (`paging`), and an
uploaded body into the content store (`ingest_request`). The signed-in user is `current.user()`, or
`current.signed_in()` where anonymous requests are refused."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import request
from werkzeug.exceptions import ClientDisconnected

from l1web import access
from l1web.errors import BadRequest, PayloadTooLarge
from l1web.state import MAX_OFFSET
from l1web.state.cache import MAX_PAGE
from l1web.store import Stored
from l1web.web import current

#: Largest JSON request body accepted, in bytes.
MAX_JSON_BYTES = 256 * 1024
#: Bytes a multipart envelope may add to the file it carries.
MULTIPART_SLACK = 64 * 1024
#: Seconds a client may keep a download or thumbnail: content never changes under its name.
IMMUTABLE_AGE = 365 * 24 * 3600


def json_body() -> dict:
    """The request's JSON object; 413 when too large, 400 naming what is wrong otherwise."""
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_JSON_BYTES} bytes")
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # `silent` covers ValueError only; "[[[[…" of 100 KB recurses in json
        raise BadRequest("the request body nests too deeply to be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:  # JSON may spell lone surrogates ("\ud800"); they cannot be stored or hashed as UTF-8
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the request body contains text that is not valid Unicode (a lone surrogate)") from None
    return body


# Listings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paging:
    """The slice of a listing a request asks for: `limit` items from `offset` (or after `cursor`)."""

    limit: int
    offset: int = 0
    cursor: str | None = None


def prefer_wait(most: float) -> float | None:
    """Seconds the client asks the server to wait before answering, from RFC 7240's
    `Prefer: wait=N` header (as Replicate's and others' APIs take it), capped at `most`; None when
    not asked. A preference is a hint (RFC 7240 section 2): a malformed one is ignored, not refused."""
    header = ",".join(request.headers.getlist("Prefer"))  # the header may come on several lines
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if value.isascii() and value.isdigit():  # delta-seconds: ASCII digits only ("²" is a digit to isdigit)
            return min(float(value[:9]), most)
        return None
    return None


def whole_arg(name: str, default: int, low: int, high: int, *, below_is_low: bool = False) -> int:
    """The query parameter `name` as a whole number in low–high (`default` when absent); 400 naming
    it otherwise. `below_is_low` counts a too-small number as `low` instead of refusing it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a whole number", field=name) from None
    if below_is_low and value < low:
        return low
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be a whole number from {low} to {high}", field=name)
    return value


def paging(default_limit: int, *, pages: bool = False, fixed_limit: bool = False,
           negative_offset_is_zero: bool = False) -> Paging:
    """Every listing's paging, read one way: `limit` (1–MAX_PAGE, or always `default_limit` when
    `fixed_limit`), then `offset` (0–MAX_OFFSET), or with `pages` a 1-based `page` and an opaque
    `cursor` (the content listings). 400 naming the parameter on anything else.
    `negative_offset_is_zero` keeps `/configs`' documented leniency."""
    limit = default_limit if fixed_limit else whole_arg("limit", default_limit, 1, MAX_PAGE)
    if not pages:
        return Paging(limit, whole_arg("offset", 0, 0, MAX_OFFSET, below_is_low=negative_offset_is_zero))
    page = whole_arg("page", 1, 1, MAX_OFFSET // limit + 1)  # offsets stop at MAX_OFFSET
    return Paging(limit, (page - 1) * limit, request.args.get("cursor") or None)


def owner_arg(name: str) -> str | None:
    """Whose records a listing shows (`l1web.access.listing_owner`): for admins the owner the
    query parameter `name` asks for (none: everyone's), for everyone else their own."""
    return access.listing_owner(current.user(), request.args.get(name))


# Uploads ----------------------------------------------------------------------------------------
def uploader() -> str | None:
    """Whose upload this request's body becomes: the signed-in user's name."""
    user = current.user()
    return user.name if user else None


def ingest_request(source: str) -> Stored:
    """Store the body of this request: the `file` part of a multipart form, or the raw body."""
    limit = current.settings().max_upload_bytes
    request.max_content_length = limit + MULTIPART_SLACK  # our writer enforces `limit` exactly
    declared = request.content_length
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise PayloadTooLarge(f"upload of {declared} bytes is larger than the limit of {limit} bytes",
                              limit=limit)
    store = current.store()
    try:
        if request.mimetype == "multipart/form-data":
            boundary = request.mimetype_params.get("boundary", "")
            if not boundary:
                raise BadRequest("multipart upload without a boundary")
            return store.put_multipart(request.stream, boundary.encode("latin-1"), source=source,
                                       owner=uploader(), max_bytes=limit)
        # A small body was hashed as it arrived (`web/bodies.py`): the store takes that digest
        # for exactly the body's bytes.
        arrived = getattr(request.environ.get("wsgi.input"), "arrival", None)
        return store.put_stream(request.stream, source=source, owner=uploader(), max_bytes=limit,
                                name=request.args.get("filename"), arrived=arrived)
    except ClientDisconnected:  # the store has already discarded its temp file
        raise BadRequest(f"upload truncated: the body ended before the {declared} bytes its "
                         "Content-Length announced") from None
