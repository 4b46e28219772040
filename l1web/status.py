"""The statuses of runs and steps: the one definition shared by Python, Redis and the templates.

Every status a run or a step can be in is here, with the few facts about it that callers
ask (is it done, is it final, may it still change). How a status may change is in
`l1web/lifecycle.py`. Templates get both enums as globals (`RunStatus`, `StepStatus`).
Pure Python: no Redis, no web framework.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    PENDING = "pending"  # submitted; its plan job is queued (or it is being planned)
    RUNNING = "running"  # planned; its steps are being enqueued and rendered
    PAUSED = "paused"  # no new step starts; steps already running finish
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        """True while the run may still change (pages keep polling; it cannot be deleted)."""
        return self in LIVE_RUN

    @property
    def final(self) -> bool:
        return not self.live


class StepStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its inputs (or for its paused run to resume)
    QUEUED = "queued"  # an RQ job for it is in a queue
    RUNNING = "running"  # a worker is rendering it (or waiting for another's claim on it)
    RETRYING = "retrying"  # an attempt failed for an infrastructure reason; the next one is queued
    CACHED = "cached"  # its output was already recorded: reused, not rendered
    COMPLETED = "completed"  # rendered here
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped while running because its run was cancelled
    SKIPPED = "skipped"  # never ran: an input failed, or its run ended first

    @property
    def done(self) -> bool:
        """True when the step's output exists (rendered now or reused)."""
        return self in DONE

    @property
    def broken(self) -> bool:
        """True when the step ended without an output: its dependents cannot run."""
        return self in BROKEN

    @property
    def final(self) -> bool:
        return self in FINAL


#: Run statuses that may still change.
LIVE_RUN = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED})
#: Step statuses after which the step's output is available to its dependents.
DONE = frozenset({StepStatus.CACHED, StepStatus.COMPLETED})
#: Step statuses that end a step without an output (its dependents are skipped).
BROKEN = frozenset({StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED})
#: Step statuses that end a step, with or without an output: a run whose steps are all in them
#: can end. Like the sets above, a status read back from Redis as text is looked up as it is.
FINAL = DONE | BROKEN
