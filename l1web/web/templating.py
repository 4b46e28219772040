"""Every Jinja global, filter and context value the templates use, registered in one place."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from l1web import __version__
from l1web.auth.csrf import csrf_token
from l1web.runs.model import RunStatus, StepStatus
from l1web.web import current, dagsvg

#: The navigation bar: (path, label).
NAV_LINKS = (("/", "Home"), ("/runs", "Runs"), ("/recipes", "Recipes"), ("/media", "Media"))


def init_app(app: Flask) -> None:
    app.context_processor(_context)
    app.add_template_filter(when, "when")
    app.add_template_filter(media_time, "media_time")
    app.add_template_filter(eta, "eta")
    app.add_template_global(ipfs_cid, "ipfs_cid")
    app.add_template_global(ipfs_run, "ipfs_run")


def _context() -> dict:
    return {"current_user": current.user, "nav_links": NAV_LINKS, "l1_version": __version__,
            "csrf_token": csrf_token, "max_upload": current.settings().max_upload_bytes,
            "RunStatus": RunStatus, "StepStatus": StepStatus}


def when(timestamp: object) -> str:
    """A stored epoch time as `2024-05-01 12:00:03 UTC`; a dash when unset."""
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"


def eta(seconds: object) -> str:
    """Seconds left as `42 s`, `3 min`, `1 h 5 min`."""
    return dagsvg.duration(seconds)  # type: ignore[arg-type]


def media_time(epoch: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC (for `<time datetime>` and for reading)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ipfs_cid(digest: str) -> str | None:
    """The IPFS CID this node added the item under (None when IPFS is off or not added yet)."""
    return current.state().ipfs.cid(digest) if current.settings().ipfs_api else None


def ipfs_run(run_id: str) -> dict | None:
    """A completed run's output and provenance CIDs (the run page shows them)."""
    return current.state().ipfs.run(run_id) if current.settings().ipfs_api else None
