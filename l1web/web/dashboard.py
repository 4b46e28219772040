"""rq-dashboard for operators, at `/rq`: admins only, and read-only.

rq-dashboard has no auth of its own: every request under `/rq` (pages, its JSON and its static
files) needs an admin, and its requeue, delete, empty and compact actions are refused, because
a job deleted or requeued behind the runs' backs would leave a run waiting for ever.
"""

from __future__ import annotations

from flask import Flask, g, request
from rq import Worker
from rq.serializers import JSONSerializer

from l1web.errors import Forbidden, Unauthorized

#: Where rq-dashboard is mounted.
DASHBOARD_PREFIX = "/rq"
#: rq-dashboard views that change RQ's state; refused whatever the method (one takes GET).
DASHBOARD_ACTIONS = frozenset({
    "rq_dashboard.delete_job_view", "rq_dashboard.requeue_job_view", "rq_dashboard.requeue_all",
    "rq_dashboard.empty_queue", "rq_dashboard.compact_queue",
})
#: Milliseconds between the dashboard's own refreshes.
DASHBOARD_POLL_MS = 5000


def init_app(app: Flask, redis_url: str) -> None:
    """Guard `/rq` (after sign-in has run) and mount the dashboard there."""
    app.before_request(_guard_dashboard)
    _mount_dashboard(app, redis_url)


def _mount_dashboard(app: Flask, redis_url: str) -> None:
    import rq_dashboard

    app.config.update(RQ_DASHBOARD_REDIS_URL=redis_url, RQ_DASHBOARD_DISABLE_DELETE=True,
                      RQ_DASHBOARD_POLL_INTERVAL=DASHBOARD_POLL_MS)
    # The dashboard keeps its serializer in a module global; ours is JSON everywhere. It also
    # lists workers without one, and a busy worker's job would then be unpickled (and fail).
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.Worker = _JSONWorker
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)


class _JSONWorker(Worker):
    """rq's Worker whose `all()` decodes jobs with our JSON serializer unless told otherwise."""

    @classmethod
    def all(cls, *args, serializer=None, **kwargs):  # type: ignore[override]
        return Worker.all(*args, serializer=serializer or JSONSerializer, **kwargs)


def _under_dashboard() -> bool:
    return request.path == DASHBOARD_PREFIX or request.path.startswith(DASHBOARD_PREFIX + "/")


def _guard_dashboard() -> None:
    """After sign-in ran: only admins reach anything under /rq, and only to look."""
    if not _under_dashboard():
        return
    user = g.get("user")
    if user is None:  # routed paths were already sent to sign-in; this covers unrouted ones
        raise Unauthorized("Sign in as an administrator to open the RQ dashboard.")
    if not user.is_admin:
        raise Forbidden("The RQ dashboard is for administrators only.")
    if request.endpoint in DASHBOARD_ACTIONS or request.method not in ("GET", "HEAD"):
        raise Forbidden("The RQ dashboard is read-only on L1: cancel, re-run or delete runs at /runs instead.")
