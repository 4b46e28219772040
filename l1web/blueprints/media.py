"""Media pages: the grid of cached items with previews, upload, the item page with a player.

Pages work without JavaScript (forms post, then redirect); with htmx the same forms swap
fragments in place. Each fragment is a `_media_*.html` partial the full page also includes.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for

from l1web.blueprints.cache import (
    IMMUTABLE_AGE,
    ingest_request,
    listing_owner,
    managed_meta,
    page_args,
    share_item,
    visible_meta,
)
from l1web.errors import L1Error
from l1web.web import current
from l1web.web.htmx import is_htmx

bp = Blueprint("media", __name__)


@bp.get("/media")
def index():
    limit, cursor, offset = page_args()
    page = current.state().cache.list(limit=limit, cursor=cursor, offset=offset, owner=listing_owner())
    return render_template("media.html", page=page, assets=_asset_names(),
                           shared=current.state().cache.shared(current.settings().page_size))


@bp.post("/media")
def upload():
    stored = ingest_request("upload")
    if is_htmx():
        page = current.state().cache.list(limit=current.settings().page_size, owner=listing_owner())
        return render_template("_media_uploaded.html", stored=stored, page=page, assets=_asset_names())
    flash("Uploaded." if stored.new else "Already in the cache.", "info")
    return redirect(url_for("media.item", digest=stored.digest), code=303)


@bp.get("/media/<digest>")
def item(digest: str):
    meta = visible_meta(digest)
    index = current.state().cache
    return render_template("media_item.html", item=meta, refs=sorted(index.refs(digest)),
                           published=index.is_published(digest), assets=_asset_names(),
                           shared=index.is_shared(digest), is_owner=_manages(digest))


def _manages(digest: str) -> bool:
    try:
        managed_meta(digest)
    except L1Error:
        return False
    return True


@bp.post("/media/<digest>/share")
def share(digest: str):
    """The Share / Stop sharing button on an item's page."""
    shared = request.form.get("shared", "1") == "1"
    share_item(digest, shared)
    flash("Shared with every signed-in user." if shared else "No longer shared.", "info")
    return redirect(url_for("media.item", digest=digest), code=303)


@bp.get("/media/<digest>/thumb")
def thumbnail(digest: str):
    visible_meta(digest)
    thumb = current.store().thumbnail(digest)
    if thumb is None:
        abort(404)
    response = send_file(thumb, mimetype="image/jpeg", conditional=True, max_age=IMMUTABLE_AGE)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/media/<digest>/delete")
def delete(digest: str):
    meta = managed_meta(digest)
    current.store().delete(digest)
    if is_htmx():
        # The card goes; the status line (which may still show an earlier refusal) and the count
        # are replaced out of band, as after an upload.
        page = current.state().cache.list(limit=current.settings().page_size, owner=listing_owner())
        return render_template("_media_deleted.html", meta=meta, page=page, assets=_asset_names())
    flash(f"Deleted {digest[:12]}….", "info")
    return redirect(url_for("media.index"), code=303)


def _asset_names() -> dict[str, list[str]]:
    """digest → the asset names pointing at it, to label samples such as `cat`."""
    names: dict[str, list[str]] = {}
    for name, digest in current.state().cache.assets().items():
        names.setdefault(digest, []).append(name)
    return names
