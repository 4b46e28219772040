"""One log line per request, as `key=value` pairs grep and log shippers read (the step jobs'
lines are `l1web.jobs.runs`'s `step_finished`).

Request lines: `request method=GET path=/runs/… status=200 seconds=0.004 user=alice run=<id>`.

Secrets never reach them: the path's query goes through the same redaction as werkzeug's lines
(`auth_token`, `token`, `csrf_token` values become `[redacted]`), headers are never logged, and
the user is the L2 username, not the token.
"""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, Response, g, request

from l1web.auth.redact import SECRET_PARAMS

#: Logger of the request lines (separate, so operators can route or silence it on its own).
ACCESS = logging.getLogger("l1web.access")
#: Characters escaped in logged paths, so a request can neither split nor forge a log line.
UNPRINTABLE = re.compile(r"[\x00-\x20\x7f-\x9f]")
#: Run ids in paths (`/runs/<id>`, `/run/<id>/…`).
RUN_IN_PATH = re.compile(r"^/runs?/([0-9a-f]{64})(?:/|$)")


def redacted_path() -> str:
    """The request's path and query, secret query values replaced, control characters escaped."""
    path = request.full_path.rstrip("?") if request.query_string else request.path
    path = UNPRINTABLE.sub(lambda m: f"%{ord(m.group()):02X}", path)
    return SECRET_PARAMS.sub(r"\1[redacted]", path)


def _start() -> None:
    g.log_started = time.perf_counter()


def _line(response: Response) -> Response:
    started = g.pop("log_started", None)
    seconds = time.perf_counter() - started if started is not None else 0.0
    user = g.get("user")
    match = RUN_IN_PATH.match(request.path)
    ACCESS.info("request method=%s path=%s status=%d seconds=%.4f addr=%s user=%s run=%s",
                request.method, redacted_path(), response.status_code, seconds, request.remote_addr,
                user.name if user else "-", match.group(1) if match else "-")
    return response


def init_app(app: Flask) -> None:
    """Time every request from the very first hook (before sign-in runs) and log it at the end."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request_funcs.setdefault(None, []).append(_line)
