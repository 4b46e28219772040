"""Delivering a run's end to its notify URL: one signed POST per attempt, off the request path.

`run_ended` is called by whoever moved the run to its final status (a compare-and-set, so once
per end): a worker when the run completes or fails, the `ended` job a cancel enqueues (the web
app moves the run to cancelled); it enqueues `deliver`, which RQ retries with the configured backoff while the receiver
fails. Every attempt is recorded on the run (`state.notify.deliveries`), shown on its page.
"""

from __future__ import annotations

import http.client
import logging
import time
from typing import Any

from rq import get_current_job

from l1web import notify
from l1web.clients import Clients, process_clients
from l1web.jobs import queues
from l1web.runs.model import Run

log = logging.getLogger(__name__)


def target(ctx: Clients, run: Run, default_url: str | None = None) -> str:
    """The run's notify URL, else its owner's default (`default_url` when the caller read it
    already); "" when none."""
    if run.get("notify_url"):
        return str(run["notify_url"])
    return default_url if default_url is not None else ctx.state.notify.user(run.get("owner") or "")["url"]


def run_ended(ctx: Clients, run_id: str, run: dict[str, Any] | None = None, *,
              default_url: str | None = None) -> None:
    """Enqueue the delivery of this run's end if it has somewhere to go; never raises.

    `run`: the run as the caller last read it, when it has it (its owner, notify URL and attempt
    do not change as it ends), saving a read of the whole record, provenance included;
    `default_url`: its owner's default notify URL, when the caller read it with the run's end."""
    try:
        run = run if run is not None else ctx.state.runs.get(run_id)
        if run and target(ctx, run, default_url):
            queues.enqueue_notify(ctx.rq_connection, run_id, int(run.get("attempt") or 1),
                                  ctx.settings.notify_retry_intervals)
    except Exception:  # noqa: BLE001 - a notification must never break finishing a run
        log.exception("could not enqueue the notification of run %s", run_id[:12])


def ended(run_id: str) -> dict[str, Any]:
    """A job: a run ended by a web request (a cancel) gets its delivery enqueued like any end."""
    run_ended(process_clients(), run_id)
    return {"ended": run_id}


def deliver(run_id: str, attempt: int) -> dict[str, Any]:
    """One attempt; raises (so RQ retries) while the receiver is unreachable or answers non-2xx."""
    ctx = process_clients()
    run = ctx.state.runs.get(run_id)
    if run is None:
        return {"delivered": False, "reason": "run deleted"}
    job = get_current_job()
    # RQ counts retries down from their maximum: the first attempt has them all left.
    left = job.retries_left if job is not None and job.retries_left is not None else 0
    tries = 1 + len(ctx.settings.notify_retry_intervals) - left
    url = target(ctx, run)
    record = {"at": time.time(), "url": url, "run_attempt": attempt, "try": tries, "status": run.get("status")}
    secret = ctx.state.notify.user(run.get("owner") or "")["secret"]
    if not secret:
        ctx.state.notify.record(run_id, {**record, "ok": False, "error": "the owner has no signing secret"})
        return {"delivered": False}
    body, headers = notify.signed_request(run, secret)
    try:
        answer = notify.post(url, body, headers, timeout=ctx.settings.notify_timeout,
                             allow_private=ctx.settings.notify_allow_private)
    except notify.TargetRefused as exc:  # not worth retrying
        ctx.state.notify.record(run_id, {**record, "ok": False, "error": str(exc)})
        return {"delivered": False}
    except (OSError, http.client.HTTPException) as exc:
        ctx.state.notify.record(run_id, {**record, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        raise
    ok = 200 <= answer.status < 300
    ctx.state.notify.record(run_id, {**record, "ok": ok, "http_status": answer.status, "seconds": answer.seconds,
                                     **({} if ok else {"error": f"the receiver answered {answer.status}"})})
    if not ok:
        raise RuntimeError(f"notify receiver answered {answer.status}")
    return {"delivered": True, "http_status": answer.status}
