"""A user's notification settings: `GET /notify`, `PUT /notify` (default URL, signing secret)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from l1web import notify
from l1web.errors import BadRequest
from l1web.state.notify import NotifySettings
from l1web.web import current
from l1web.web.current import signed_in
from l1web.web.requests import json_body

bp = Blueprint("notify", __name__)


def _view(settings: NotifySettings, secret: str | None = None) -> dict:
    out = {"url": settings["url"] or None, "secret_set": bool(settings["secret"])}
    if secret:
        out["secret"] = secret  # only in the answer that set or made it
    return out


@bp.get("/notify")
def show():
    return jsonify(_view(current.state().notify.user(signed_in().name)))


@bp.put("/notify")
def update():
    """`{"url": default notify URL or null, "secret": your signing secret}`; without a secret
    and with none set yet, L1 makes one and returns it (once)."""
    user = signed_in()
    body = json_body()
    unknown = sorted(set(body) - {"url", "secret"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    store = current.state().notify
    settings = store.user(user.name)
    secret = body.get("secret")
    made = None
    if secret is not None:
        if not isinstance(secret, str) or not notify.MIN_SECRET <= len(secret) <= 256:
            raise BadRequest(f"'secret' must be {notify.MIN_SECRET}–256 characters", field="secret")
    elif not settings["secret"]:
        secret = made = notify.new_secret()
    changes = {"secret": secret} if secret else {}
    if "url" in body:
        url = body["url"] or ""
        if url:
            if not isinstance(url, str):
                raise BadRequest("'url' must be an http(s) URL or null", field="url")
            try:  # checked before anything is written
                notify.resolve(url, allow_private=current.settings().notify_allow_private)
            except notify.TargetRefused as exc:
                raise BadRequest(str(exc), field="url") from None
        changes["url"] = url
    store.set_user(user.name, **changes)
    return jsonify(_view(store.user(user.name), made or (secret if body.get("secret") else None)))
