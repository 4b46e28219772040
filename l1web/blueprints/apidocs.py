"""The API's own documentation: `/openapi.json`, the interactive `/docs`, and `/download/client`.

The document itself is YAML in `l1web/openapi/` (see that package); this blueprint only serves
it, naming this server in `servers`. `/download/client` hands out the CLI `render.py` with this
server's public URL as its default, so a downloaded copy works without `--server`.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, jsonify, render_template, request

from l1web import openapi
from l1web.paths import ROOT
from l1web.web import current

bp = Blueprint("apidocs", __name__)

#: The CLI script served by `/download/client`.
CLIENT_SCRIPT = ROOT / "render.py"
#: The line of render.py holding its default server (the download rewrites it).
DEFAULT_SERVER_LINE = re.compile(r'^DEFAULT_SERVER = "[^"\n]*"$', re.MULTILINE)
#: Media type of the downloaded script.
PYTHON_MIMETYPE = "text/x-python"


def public_url() -> str:
    """This server as clients reach it: the L1_PUBLIC_URL setting, else the request's host."""
    return (current.settings().l1_public_url or request.host_url).rstrip("/")


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.document(public_url()))


@bp.get("/docs")
def docs():
    return render_template("docs.html", spec_url="/openapi.json", user=current.user())


def client_script(server_url: str) -> str:
    """render.py with `server_url` as DEFAULT_SERVER."""
    text = CLIENT_SCRIPT.read_text(encoding="utf-8")
    literal = f"DEFAULT_SERVER = {json.dumps(server_url)}"  # a JSON string is a valid Python literal
    text, count = DEFAULT_SERVER_LINE.subn(lambda _: literal, text, count=1)
    if count != 1:
        raise RuntimeError("render.py has no DEFAULT_SERVER line to fill in")
    return text


@bp.get("/download/client")
def download_client():
    response = Response(client_script(public_url()), mimetype=PYTHON_MIMETYPE)
    response.headers["Content-Disposition"] = "attachment; filename=render.py"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
