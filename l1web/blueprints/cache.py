"""The content cache's JSON API: list, download (with Range), metadata, upload, import, delete.

Routes only parse the request and call one store or index method; the store raises domain
errors that `l1web.errors` maps to `{"error", "message"}` with the right status.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, jsonify, request, send_file, url_for
from werkzeug.exceptions import ClientDisconnected

from l1web import access
from l1web.auth.guard import public
from l1web.errors import BadRequest, Forbidden, InvalidHash, L1Error, NotFound, PayloadTooLarge, Unauthorized
from l1web.state import MAX_OFFSET
from l1web.state.cache import MAX_PAGE, ItemMeta
from l1web.store import Stored, facts
from l1web.store.names import check_digest
from l1web.store.remote import WORKER_TOKEN_HEADER, ingest_verified
from l1web.web import current
from l1web.web.templating import ipfs_cid

bp = Blueprint("cache", __name__)

#: Seconds a client may keep a download: content never changes under its name.
IMMUTABLE_AGE = 365 * 24 * 3600
#: Bytes a multipart envelope may add to the file it carries.
MULTIPART_SLACK = 64 * 1024


def item_json(meta: ItemMeta) -> dict:
    return {**meta.to_json(), "url": url_for("cache.download", digest=meta.digest)}


def page_args() -> tuple[int, str | None, int]:
    """`limit`, `cursor` and an offset from `page` (1-based) — 400 on nonsense."""
    try:
        limit = int(request.args.get("limit", current.settings().page_size))
        page = int(request.args.get("page", 1))
    except ValueError:
        raise BadRequest("limit and page must be integers") from None
    if not 1 <= limit <= MAX_PAGE or page < 1:
        raise BadRequest(f"limit must be 1–{MAX_PAGE} and page at least 1")
    if (page - 1) * limit > MAX_OFFSET:
        raise BadRequest(f"page {page} is beyond any listing (offsets stop at {MAX_OFFSET})")
    return limit, request.args.get("cursor") or None, (page - 1) * limit


def owner_name() -> str | None:
    user = current.user()
    return user.name if user else None


def access_item(digest: str) -> access.Item:
    return current.state().cache.access_item(digest, owner_name())


def visible_meta(digest: str) -> ItemMeta:
    """The item's metadata if this user may see it (`l1web.access.can_see`); anything else is
    the same 404 as an unknown hash."""
    meta = current.store().meta(digest)
    if access.can_see(current.user(), access_item(digest)):
        return meta
    raise NotFound(f"no cached item {digest}")


def managed_meta(digest: str) -> ItemMeta:
    """Like `visible_meta`, for changes (delete, share): one's own items only (admins: any).
    Another user's shared item is visible but answers 403 here, since seeing it is allowed."""
    meta = visible_meta(digest)
    if not access.can_manage(current.user(), access_item(digest)):
        raise Forbidden("only the item's owner can change it")
    return meta


def listing_owner() -> str | None:
    """Whose uploads a listing shows: everyone's for admins, one's own otherwise."""
    user = current.user()
    if user is None or user.is_admin:
        return request.args.get("owner") or None
    return user.name


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
                                       owner=owner_name(), max_bytes=limit)
        return store.put_stream(request.stream, source=source, owner=owner_name(), max_bytes=limit,
                                name=request.args.get("filename"))
    except ClientDisconnected:  # the store has already discarded its temp file
        raise BadRequest(f"upload truncated: the body ended before the {declared} bytes its "
                         "Content-Length announced") from None


def stored_response(stored: Stored) -> tuple[Response, int, dict[str, str]]:
    body = {**item_json(stored.meta), "new": stored.new}
    return jsonify(body), 201 if stored.new else 200, {"Location": body["url"]}


@bp.get("/cache")
def listing():
    limit, cursor, offset = page_args()
    page = current.state().cache.list(limit=limit, cursor=cursor, offset=offset, owner=listing_owner())
    return jsonify(items=[item_json(m) for m in page.items], next_cursor=page.next_cursor,
                   total=page.total, limit=limit)


@bp.route("/cache/<digest>", methods=["GET", "HEAD"])
def download(digest: str):
    """The item's bytes (Range, ETag); an attachment unless `?inline=1` asks for playable media."""
    meta = visible_meta(digest)
    path = current.store().path_for(digest)
    inline = request.args.get("inline") == "1" and facts.may_inline(meta.kind, meta.mimetype)
    response = send_file(
        path, mimetype=meta.mimetype, as_attachment=not inline, conditional=True, etag=digest,
        download_name=f"{digest}.{facts.extension(meta.kind, meta.format)}",
        last_modified=meta.created or None,
    )
    response.headers["Cache-Control"] = f"private, max-age={IMMUTABLE_AGE}, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    cid = ipfs_cid(digest)
    if cid:
        response.headers["X-Ipfs-Path"] = f"/ipfs/{cid}"
    return response


@bp.get("/cache/<digest>/meta")
def metadata(digest: str):
    meta = visible_meta(digest)
    index = current.state().cache
    refs = sorted(index.refs(digest))
    return jsonify({**item_json(meta), "refs": refs, "published": index.is_published(digest),
                    "ipfs_cid": ipfs_cid(digest)})


# Workers on other hosts (WORKER_TOKEN): fetch inputs they lack, send back what they rendered ---------
def check_worker_token() -> None:
    """404 when the feature is off (as if the route did not exist), 401 for a wrong token."""
    expected = current.settings().worker_token
    if not expected:
        raise NotFound("no such route")
    sent = request.headers.get(WORKER_TOKEN_HEADER, "")
    if not hmac.compare_digest(hashlib.sha256(sent.encode()).digest(), hashlib.sha256(expected.encode()).digest()):
        raise Unauthorized(f"{WORKER_TOKEN_HEADER} is missing or wrong")


@bp.get("/worker/cache/<digest>")
@public
def worker_download(digest: str):
    check_worker_token()
    check_digest(digest)
    if not current.state().runs.live_run_needs(digest):  # a worker token is no key to the whole cache
        raise NotFound(f"no cached item {digest}")
    return send_file(current.store().path_for(digest), mimetype="application/octet-stream", conditional=False)


@bp.put("/worker/cache/<digest>")
@public
def worker_upload(digest: str):
    """A worker's output, stored only if its bytes hash to `digest` (400 and discarded otherwise)."""
    check_worker_token()
    check_digest(digest)
    request.max_content_length = current.settings().max_upload_bytes + 1  # ingest_verified says 413
    store = current.store()
    if not store.has(digest):
        owner = request.args.get("owner") or None
        chunks = iter(lambda: request.stream.read(1024 * 1024), b"")
        try:
            ingest_verified(store, digest, chunks, source="worker", owner=owner,
                            max_bytes=current.settings().max_upload_bytes)
        except PayloadTooLarge:
            raise
        except L1Error as exc:
            raise BadRequest(exc.message) from None
    return jsonify(stored=digest)


@bp.delete("/worker/cache/<digest>")
@public
def worker_remove_chunk(digest: str):
    """A worker joined a chunked step: this server's copy of one of its chunks goes too.

    Only digests listed as removed chunks (state/chunks.py) are accepted: a worker token is no
    licence to delete anything else (404, as for an unknown item).
    """
    check_worker_token()
    check_digest(digest)
    if not current.state().removed_chunks.contains(digest):
        raise NotFound(f"no cached item {digest}")
    current.store().location(digest).unlink(missing_ok=True)
    return jsonify(deleted=digest)


@bp.delete("/cache/<digest>")
def delete(digest: str):
    managed_meta(digest)
    current.store().delete(digest)
    return jsonify(deleted=digest)


def share_item(digest: str, shared: bool) -> ItemMeta:
    """Share (or stop sharing) one of the user's items with every signed-in user."""
    meta = managed_meta(digest)
    current.state().cache.set_shared(digest, shared)
    return meta


@bp.post("/cache/<digest>/share")
def share(digest: str):
    share_item(digest, True)
    return jsonify(digest=digest, shared=True)


@bp.delete("/cache/<digest>/share")
def unshare(digest: str):
    share_item(digest, False)
    return jsonify(digest=digest, shared=False)


@bp.route("/cache/<path:junk>", methods=["GET", "HEAD", "DELETE"])
def malformed(junk: str):
    """Anything under /cache/ that is not a content hash (slashes, traversal) is a 400."""
    check_digest(junk)  # always raises here: a content hash has no slash
    raise InvalidHash("not a content hash")


@bp.post("/cache/upload")
def upload():
    return stored_response(ingest_request("upload"))


@bp.post("/cache/import")
def import_path():
    user = current.user()
    if not (user and user.is_admin):
        raise Forbidden("import by path is for admins only")
    settings = current.settings()
    stored = current.store().import_path(request.args.get("path", ""), settings.import_roots,
                                         owner=user.name, max_bytes=settings.max_upload_bytes)
    return stored_response(stored)


@bp.get("/assets")
def assets():
    index = current.state().cache
    found = {}
    for name, digest in index.assets().items():
        meta = index.get(digest)
        found[name] = {"digest": digest, **(item_json(meta) if meta else {"missing": True})}
    return jsonify(assets=found)
