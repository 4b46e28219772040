"""Step statuses, as the engine reports them and the state module stores them."""

from __future__ import annotations

from enum import StrEnum


class StepStatus(StrEnum):
    PENDING = "pending"
    CACHED = "cached"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


#: Statuses after which a step's output is available to its dependents.
DONE = frozenset({StepStatus.CACHED, StepStatus.COMPLETED})
#: Statuses that stop a step's dependents.
BROKEN = frozenset({StepStatus.FAILED, StepStatus.SKIPPED})
