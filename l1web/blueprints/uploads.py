"""Resumable uploads over the tus 1.0 protocol, and `POST /cache/missing`.

tus (https://tus.io/protocols/resumable-upload): `POST /cache/uploads` with `Upload-Length`
(and `Upload-Metadata`, e.g. `filename`) creates an upload and answers its URL in `Location`;
`PATCH` appends at `Upload-Offset`; `HEAD` tells the offset to resume from; `DELETE` terminates.
Extensions: creation, termination, checksum (`Upload-Checksum`, 460 on mismatch), expiration
(`Upload-Expires`). When the last byte is in, the item enters the content store under its
SHA3-256 like any upload; the final PATCH (and HEAD afterwards) names it in `L1-Digest`.

Hand-written, because no maintained tus server exists for Flask; the logic is in
`l1web.store.uploads`, these routes only translate headers.
"""

from __future__ import annotations

from email.utils import formatdate

from flask import Blueprint, Response, jsonify, request, url_for

from l1web import access
from l1web.auth.guard import public
from l1web.errors import BadRequest, L1Error, UnsupportedMedia
from l1web.state.uploads import Upload
from l1web.store.names import DIGEST
from l1web.store.uploads import CHECKSUMS, UploadStore, parse_metadata
from l1web.web import current

bp = Blueprint("uploads", __name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum,expiration"
#: Content type of a PATCH body (tus core).
PATCH_TYPE = "application/offset+octet-stream"
#: Most hashes one `POST /cache/missing` may ask about.
MAX_MISSING = 1000
#: Header naming the stored item's SHA3-256 once an upload is complete (not part of tus).
DIGEST_HEADER = "L1-Digest"


class PreconditionFailed(L1Error):
    status, code = 412, "precondition_failed"


def upload_store() -> UploadStore:
    return UploadStore(current.store(), current.state().uploads)


def username() -> str:
    user = current.user()
    assert user is not None  # the guard lets only signed-in users reach these routes
    return user.name


@bp.after_request
def tus_headers(response: Response) -> Response:
    if request.path.startswith("/cache/uploads"):
        response.headers["Tus-Resumable"] = TUS_VERSION
        response.headers["Cache-Control"] = "no-store"
    return response


def require_tus() -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise PreconditionFailed(f"send Tus-Resumable: {TUS_VERSION} (the only tus version this server speaks)")


def int_header(name: str, *, required: bool = True) -> int | None:
    value = request.headers.get(name)
    if value is None:
        if required:
            raise BadRequest(f"the {name} header is missing")
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"{name} must be a non-negative integer, not {value[:30]!r}")
    return int(value)


def no_content(headers: dict[str, str] | None = None, status: int = 204) -> Response:
    """An answer whose meaning is all in its status and headers (no body, no Content-Type)."""
    response = Response(status=status, headers=headers or {})
    del response.headers["Content-Type"]
    return response


def expires_header(upload: Upload) -> dict[str, str]:
    return {"Upload-Expires": formatdate(upload.expires, usegmt=True)}


@bp.route("/cache/uploads", methods=["OPTIONS"])
@public
def discover():
    """tus discovery: versions, extensions, the largest upload and the checksum algorithms."""
    settings = current.settings()
    return no_content({
        "Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(settings.max_upload_bytes), "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})


@bp.post("/cache/uploads")
def create():
    require_tus()
    if request.headers.get("Upload-Defer-Length"):
        raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length")
    if request.content_length:
        raise BadRequest("send the bytes with PATCH after creating the upload (creation-with-upload "
                         "is not supported)")
    length = int_header("Upload-Length")
    assert length is not None
    settings = current.settings()
    upload = upload_store().create(username(), length, max_bytes=settings.max_upload_bytes,
                                   expiry=settings.upload_expiry, limit=settings.upload_inflight_bytes,
                                   metadata=parse_metadata(request.headers.get("Upload-Metadata")))
    location = url_for("uploads.resume", upload_id=upload.id, _external=False)
    response = jsonify(id=upload.id, url=location, length=upload.length, offset=0)
    response.status_code = 201
    response.headers.update({"Location": location, **expires_header(upload)})
    return response


@bp.route("/cache/uploads/<upload_id>", methods=["HEAD"])
def resume(upload_id: str):
    """The offset to resume from (tus core); `L1-Digest` once complete."""
    require_tus()
    upload = upload_store().owned(upload_id, username())
    headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length)}
    if upload.finished:
        headers[DIGEST_HEADER] = str(upload.digest)
    else:
        headers.update(expires_header(upload))
    return no_content(headers, 200)


@bp.route("/cache/uploads/<upload_id>", methods=["PATCH"])
def append(upload_id: str):
    require_tus()
    if request.mimetype != PATCH_TYPE:
        raise UnsupportedMedia(f"a PATCH body must be sent as Content-Type: {PATCH_TYPE}")
    offset = int_header("Upload-Offset")
    assert offset is not None
    store = upload_store()
    upload = store.owned(upload_id, username())
    settings = current.settings()
    request.max_content_length = settings.max_upload_bytes  # the store checks the upload's own length
    upload, stored = store.append(upload, offset, request.stream, request.content_length,
                                  checksum=request.headers.get("Upload-Checksum"),
                                  expiry=settings.upload_expiry)
    headers = {"Upload-Offset": str(upload.offset), **expires_header(upload)}
    if stored is not None:
        headers[DIGEST_HEADER] = stored.digest
        headers["Content-Location"] = url_for("cache.download", digest=stored.digest)
    return no_content(headers)


@bp.delete("/cache/uploads/<upload_id>")
def terminate(upload_id: str):
    require_tus()
    store = upload_store()
    store.terminate(store.owned(upload_id, username()))
    return no_content()


# Only what is missing -----------------------------------------------------------------------------
@bp.post("/cache/missing")
def missing():
    """Which of up to MAX_MISSING hashes the caller lacks: unknown, quarantined, or not theirs to
    use (another user's private item counts as missing, exactly like an unknown one)."""
    body = request.get_json(silent=True)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list):
        raise BadRequest('send JSON {"hashes": ["<sha3-256 hex>", …]}')
    if len(hashes) > MAX_MISSING:
        raise BadRequest(f"at most {MAX_MISSING} hashes per request, not {len(hashes)}")
    for value in hashes:
        if not isinstance(value, str) or not DIGEST.fullmatch(value):
            shown = value[:80] if isinstance(value, str) else type(value).__name__
            raise BadRequest(f"not a content hash: {shown!r} (expected 64 lower-case hex characters)")
    lacking = access.lacking(current.state().cache, hashes, current.user())
    return jsonify(missing=lacking, asked=len(set(hashes)))
