"""Media pages: the grid of cached items with previews, upload, the item page with a player.

Pages work without JavaScript (forms post, then redirect); with htmx the same forms swap
fragments in place. Each fragment is a `_media_*.html` partial the full page also includes.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for

from l1web import access
from l1web.web import current
from l1web.web.htmx import is_htmx
from l1web.web.requests import IMMUTABLE_AGE, ingest_request, owner_arg, paging

bp = Blueprint("media", __name__)


@bp.get("/media")
def index():
    asked = paging(current.settings().page_size, pages=True)
    page = current.state().cache.list(limit=asked.limit, cursor=asked.cursor, offset=asked.offset,
                                      owner=owner_arg("owner"))
    return render_template("media.html", page=page, assets=_asset_names(),
                           shared=current.state().cache.shared(current.settings().page_size))


@bp.post("/media")
def upload():
    stored = ingest_request("upload")
    if is_htmx():
        page = current.state().cache.list(limit=current.settings().page_size, owner=owner_arg("owner"))
        return render_template("_media_uploaded.html", stored=stored, page=page, assets=_asset_names())
    flash("Uploaded." if stored.new else "Already in the cache.", "info")
    return redirect(url_for("media.item", digest=stored.digest), code=303)


@bp.get("/media/<digest>")
def item(digest: str):
    meta = access.visible_item(current.store(), digest, current.user())
    index = current.state().cache
    return render_template("media_item.html", item=meta, refs=sorted(index.refs(digest)),
                           published=index.is_published(digest), assets=_asset_names(),
                           shared=index.is_shared(digest), is_owner=access.manageable(index, digest, current.user()))


@bp.post("/media/<digest>/share")
def share(digest: str):
    """The Share / Stop sharing button on an item's page."""
    shared = request.form.get("shared", "1") == "1"
    access.managed_item(current.store(), digest, current.user())
    current.state().cache.set_shared(digest, shared)
    flash("Shared with every signed-in user." if shared else "No longer shared.", "info")
    return redirect(url_for("media.item", digest=digest), code=303)


@bp.get("/media/<digest>/thumb")
def thumbnail(digest: str):
    access.visible_item(current.store(), digest, current.user())
    thumb = current.store().thumbnail(digest)
    if thumb is None:
        abort(404)
    response = send_file(thumb, mimetype="image/jpeg", conditional=True, max_age=IMMUTABLE_AGE)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/media/<digest>/delete")
def delete(digest: str):
    meta = access.managed_item(current.store(), digest, current.user())
    current.store().delete(digest)
    if is_htmx():
        # The card goes; the status line (which may still show an earlier refusal) and the count
        # are replaced out of band, as after an upload.
        page = current.state().cache.list(limit=current.settings().page_size, owner=owner_arg("owner"))
        return render_template("_media_deleted.html", meta=meta, page=page, assets=_asset_names())
    flash(f"Deleted {digest[:12]}….", "info")
    return redirect(url_for("media.index"), code=303)


def _asset_names() -> dict[str, list[str]]:
    """digest → the asset names pointing at it, to label samples such as `cat`."""
    names: dict[str, list[str]] = {}
    for name, digest in current.state().cache.assets().items():
        names.setdefault(digest, []).append(name)
    return names
