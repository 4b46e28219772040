"""The content cache's JSON API: list, download (with Range), metadata, upload, import, delete.

Routes only parse the request and call one store or index method; the store raises domain
errors that `l1web.errors` maps to `{"error", "message"}` with the right status.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, jsonify, request, send_file, url_for

from l1web import access
from l1web.auth.guard import public
from l1web.errors import BadRequest, Forbidden, InvalidHash, L1Error, NotFound, PayloadTooLarge, Unauthorized
from l1web.state.cache import ItemMeta
from l1web.store import Stored, facts
from l1web.store.names import check_digest
from l1web.store.remote import WORKER_TOKEN_HEADER, ingest_verified
from l1web.web import current
from l1web.web.requests import IMMUTABLE_AGE, ingest_request, owner_arg, paging
from l1web.web.templating import ipfs_cid

bp = Blueprint("cache", __name__)


def item_json(meta: ItemMeta) -> dict:
    return {**meta.to_json(), "url": url_for("cache.download", digest=meta.digest)}


def stored_response(stored: Stored) -> tuple[Response, int, dict[str, str]]:
    body = {**item_json(stored.meta), "new": stored.new}
    return jsonify(body), 201 if stored.new else 200, {"Location": body["url"]}


@bp.get("/cache")
def listing():
    asked = paging(current.settings().page_size, pages=True)
    page = current.state().cache.list(limit=asked.limit, cursor=asked.cursor, offset=asked.offset,
                                      owner=owner_arg("owner"))
    return jsonify(items=[item_json(m) for m in page.items], next_cursor=page.next_cursor,
                   total=page.total, limit=asked.limit)


@bp.route("/cache/<digest>", methods=["GET", "HEAD"])
def download(digest: str):
    """The item's bytes (Range, ETag); an attachment unless `?inline=1` asks for playable media."""
    meta = access.visible_item(current.store(), digest, current.user())
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
    meta = access.visible_item(current.store(), digest, current.user())
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
    access.managed_item(current.store(), digest, current.user())
    current.store().delete(digest)
    return jsonify(deleted=digest)


@bp.post("/cache/<digest>/share")
def share(digest: str):
    access.managed_item(current.store(), digest, current.user())
    current.state().cache.set_shared(digest, True)
    return jsonify(digest=digest, shared=True)


@bp.delete("/cache/<digest>/share")
def unshare(digest: str):
    access.managed_item(current.store(), digest, current.user())
    current.state().cache.set_shared(digest, False)
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
