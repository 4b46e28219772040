"""Runs and steps as plain data: statuses shared by Python and templates, and the run id."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from l1web.engine.canonical import sha3_json


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        """True while the run may still change by itself (pages keep polling)."""
        return self in (RunStatus.PENDING, RunStatus.RUNNING)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    CACHED = "cached"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """True when the step's output exists (rendered now or reused)."""
        return self in (StepStatus.CACHED, StepStatus.COMPLETED)

    @property
    def final(self) -> bool:
        return self in (StepStatus.CACHED, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED)


def run_id_for(owner: str, recipe_id: str, inputs: Mapping[str, str], params: Mapping[str, object]) -> str:
    """SHA3 of the canonical (owner, recipe id, inputs, parameters).

    The same user submitting the same run gets the same id; another user gets a run of their
    own (which reuses every rendered step: step cache ids name content, not people).
    """
    return sha3_json({"owner": owner, "recipe": recipe_id, "inputs": dict(inputs), "params": dict(params)})


def legacy_run_id_for(recipe_id: str, inputs: Mapping[str, str], params: Mapping[str, object]) -> str:
    """The id runs had before owners were part of it; such runs keep it (and their owner)."""
    return sha3_json({"recipe": recipe_id, "inputs": dict(inputs), "params": dict(params)})
