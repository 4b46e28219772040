"""Runs as plain data: the run id (statuses are in `l1web/status.py`, re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l1web.engine.canonical import sha3_json
from l1web.status import RunStatus, StepStatus

__all__ = ["Run", "RunStatus", "StepStatus", "legacy_run_id_for", "run_id_for"]

#: A run record as the state manager returns it: the run hash, its JSON fields decoded.
Run = dict[str, Any]


def run_id_for(owner: str, recipe_id: str, inputs: Mapping[str, str], params: Mapping[str, object]) -> str:
    """SHA3 of the canonical (owner, recipe id, inputs, parameters).

    The same user submitting the same run gets the same id; another user gets a run of their
    own (which reuses every rendered step: step cache ids name content, not people).
    """
    return sha3_json({"owner": owner, "recipe": recipe_id, "inputs": dict(inputs), "params": dict(params)})


def legacy_run_id_for(recipe_id: str, inputs: Mapping[str, str], params: Mapping[str, object]) -> str:
    """The id runs had before owners were part of it; such runs keep it (and their owner)."""
    return sha3_json({"recipe": recipe_id, "inputs": dict(inputs), "params": dict(params)})
