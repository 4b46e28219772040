"""The home page and the server-info JSON (`GET /` with `Accept: application/json`)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from l1web import __version__
from l1web.web import current
from l1web.web.errors import wants_json

bp = Blueprint("home", __name__)


def server_info() -> dict:
    settings = current.settings()
    return {
        "name": "L1",
        "description": "Art DAG rendering server",
        "version": __version__,
        "public_url": settings.l1_public_url,
        "l2_servers": list(settings.l2_servers),
        "docs": "/docs",
    }


@bp.get("/")
def index():
    info = server_info()
    if wants_json():
        return jsonify(info)
    return render_template("home.html", info=info, user=current.user())
