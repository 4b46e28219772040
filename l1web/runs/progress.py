"""How far a run is: each step's progress (live from its worker, or implied by its status),
and the run's as the weighted sum of its steps (weight = expected media length × a per-node-type
cost, `engine/estimate.py`), not "steps done / steps total"."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from l1web.runs.model import StepStatus

#: Fields of a step's `progress` in the API (and what the pages show).
FIELDS = ("frames", "total_frames", "percent", "fps", "eta", "speed", "out_seconds", "seconds", "preview_at")
#: Steps whose live progress hash is read: the others' is implied by their status.
WATCHED = frozenset({StepStatus.RUNNING, StepStatus.COMPLETED, StepStatus.FAILED})


def step_progress(step: Mapping[str, Any], live: Mapping[str, Any] | None) -> dict[str, Any]:
    """`{frames, total_frames, percent, fps, eta, …}` of one step (merged description + state)."""
    expect = step.get("expect") or {}
    status = str(step.get("status") or StepStatus.PENDING)
    done = status in (StepStatus.CACHED, StepStatus.COMPLETED)
    out: dict[str, Any] = {name: None for name in FIELDS}
    out["total_frames"] = expect.get("frames")
    out["seconds"] = expect.get("seconds")
    if live:
        out.update({name: live.get(name) for name in FIELDS if live.get(name) is not None})
    else:
        out["frames"] = expect.get("frames") if done else 0
        out["percent"] = 100.0 if done else 0.0
    if done:
        out["percent"], out["eta"] = 100.0, 0.0
    elif status != StepStatus.RUNNING:
        out["eta"] = None
    return out


def weight(step: Mapping[str, Any]) -> float:
    if step.get("type") == "SOURCE":
        return 0.0
    expect = step.get("expect") or {}
    value = expect.get("weight")
    return float(value) if isinstance(value, int | float) and value > 0 else 1.0


def run_progress(run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`{percent, eta}` of a run whose steps carry `progress` (from `step_progress`)."""
    status = str(run.get("status") or "")
    if status == "completed":
        return {"percent": 100.0, "eta": 0.0}
    total = sum(weight(s) for s in steps)
    if not steps or total <= 0:
        return {"percent": 0.0, "eta": None}
    finished = (StepStatus.CACHED, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED)
    done = sum(weight(s) * (1.0 if s.get("status") in finished else (s["progress"]["percent"] or 0) / 100)
               for s in steps)
    percent = round(min(100.0 * done / total, 100.0), 1)
    eta = None
    try:
        elapsed = time.time() - float(run.get("started") or "")
    except ValueError:
        elapsed = 0.0
    if status == "running" and 0 < percent < 100 and elapsed > 0:
        eta = round(elapsed * (100 - percent) / percent, 1)
    return {"percent": percent, "eta": eta}
