"""For operators: `/healthz`, `/readyz`, `/metrics`, the admin status page and the RQ dashboard.

- `/healthz` answers from the process alone (no Redis): "the web process is alive".
- `/readyz` answers 200 only when Redis answers, at least one RQ worker is registered and no
  queue is deeper than `READY_MAX_QUEUE`; otherwise 503 with the reason.
- `/metrics` is the Prometheus text format, read from Redis at scrape time through a registry
  of this app's own. Admins (session or their L2 token as Bearer) may read it, and so may a
  scraper holding the token whose SHA-256 is `METRICS_TOKEN_SHA256`.
- `/rq` is rq-dashboard, admins only and read-only (`l1web/web/dashboard.py` mounts it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from prometheus_client import CollectorRegistry

from l1web import metrics
from l1web.auth.access import require_admin
from l1web.auth.sessions import bearer_token
from l1web.web import current
from l1web.web.errors import wants_json

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

#: app.extensions key of this app's Prometheus registry.
REGISTRY = "l1.metrics"


def init_app(app: Flask, registry: CollectorRegistry) -> None:
    """Keep this app's metrics registry; a scraper's METRICS token is checked right after the
    request log starts its clock, before sign-in (the factory calls this once)."""
    app.extensions[REGISTRY] = registry
    app.before_request_funcs.setdefault(None, []).insert(1, _metrics_token)


# Health ---------------------------------------------------------------------------------------
@bp.get("/healthz")
def healthz():
    """The process is up and serving; touches nothing else."""
    from l1web import __version__

    return jsonify({"ok": True, "version": __version__})


def readiness() -> tuple[bool, dict]:
    """(ready, details): Redis answers, a worker is registered, no queue is over the limit."""
    settings = current.settings()
    limit = settings.ready_max_queue
    details: dict = {"redis": "unknown", "workers": None, "queues": {}, "max_queue": limit}
    try:
        current.state().ping()
        details["redis"] = "ok"
        alive = metrics.live_workers(current.clients().rq_connection)
        queued = metrics.queue_depths(current.clients().rq_connection)
    except redis.RedisError as exc:
        details["redis"] = "unreachable"
        return False, {**details, "reason": f"Redis is unreachable ({type(exc).__name__})."}
    details["workers"] = alive
    details["queues"] = queued
    if not alive:
        return False, {**details, "reason": "No RQ worker is alive: start one with `python worker.py`."}
    over = [(name, depth) for name, depth in queued.items() if depth > limit]
    if over:
        name, depth = over[0]
        return False, {**details, "reason": f"Queue {name!r} holds {depth} waiting jobs (limit {limit})."}
    return True, details


@bp.get("/readyz")
def readyz():
    ready, details = readiness()
    return jsonify({"ready": ready, **details}), 200 if ready else 503


# Metrics --------------------------------------------------------------------------------------
def _metrics_response() -> Response:
    body = metrics.exposition(current_app.extensions[REGISTRY])
    return Response(body, content_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _metrics_token() -> Response | None:
    """Before sign-in: a scraper's METRICS token gets the metrics; any other Bearer goes on to L2."""
    expected = current.settings().metrics_token_sha256
    if request.path != "/metrics" or request.method != "GET" or not expected:
        return None
    token = bearer_token()
    if not token:
        return None
    if hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), expected):
        return _metrics_response()
    return None


@bp.get("/metrics")
def metrics_page():
    require_admin()
    return _metrics_response()


# Status page ----------------------------------------------------------------------------------
def ipns_state() -> dict | str | None:
    """Whatever the IPFS sync wrote to `artdag:ipns:status` (a hash or a string); None if unset."""
    return current.state().ipns_status()


def redis_info() -> dict:
    info = current.state().server_info()
    return {
        "version": info.get("redis_version"),
        "used_memory": info.get("used_memory"),
        "used_memory_human": info.get("used_memory_human"),
        "maxmemory": info.get("maxmemory"),
        "aof_enabled": bool(info.get("aof_enabled")),
        "uptime_seconds": info.get("uptime_in_seconds"),
        "connected_clients": info.get("connected_clients"),
    }


def status_view() -> dict:
    bundle = current.clients()
    queue_list = metrics.queues(bundle.rq_connection)
    return {
        "workers": [w.__dict__ for w in metrics.workers(bundle.rq_connection)],
        "queues": [q.__dict__ for q in queue_list],
        "failed_jobs": sum(q.failed for q in queue_list),
        "storage": metrics.storage(bundle.state, bundle.settings.cache_dir).__dict__,
        "redis": redis_info(),
        "ipns": ipns_state(),
        "ready": readiness()[1].get("reason") or "ready",
    }


@bp.get("/admin/status")
def status_page():
    require_admin()
    view = status_view()
    if wants_json():
        return jsonify(view)
    return render_template("admin_status.html", **view)
