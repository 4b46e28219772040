"""Batches and bulk actions: one recipe over many inputs, and one action over many runs.

A batch is validated whole before anything is written: the recipe, the priority, and every input
of every run (each checked by the one access rule, `RunService.bind`); a bad one is a 4xx naming
its position and creates nothing. Then the rate limit is asked for all its runs at once (all or
none), and each run is submitted as `POST /runs` would (the same user's identical run is reused).

Bulk actions apply one of the run actions to many runs, each on its own: one run's refusal (it is
not in a state the action allows) does not stop the others, and is reported beside its id. A run
the user may not see is reported exactly as an unknown id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from l1web.errors import BadRequest, L1Error, NotFound
from l1web.runs.model import RunStatus
from l1web.runs.service import RunService, Submission, parse_flag, parse_output_and_params, parse_priority
from l1web.users import User

#: Most runs one batch (or one bulk action) may name.
MAX_BATCH = 100
#: The run actions a bulk request may apply.
BULK_ACTIONS = ("cancel", "pause", "resume", "requeue", "delete")
#: A batch id: 32 hex digits (random, not derived from the content: the same inputs twice are two batches).
BATCH_ID_LENGTH = 32


@dataclass(frozen=True)
class BatchSubmission:
    recipe: str
    #: One entry per run: a hash or asset name (a one-input recipe), a list or a {name: ref} map.
    inputs: list[list[str] | dict[str, str]] = field(default_factory=list)
    output_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    paused: bool = False

    @classmethod
    def from_json(cls, body: object, *, limit: int = MAX_BATCH) -> BatchSubmission:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object with 'recipe' and 'inputs'")
        unknown = sorted(set(body) - {"recipe", "inputs", "output_name", "params", "priority", "paused"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        recipe = body.get("recipe")
        if not isinstance(recipe, str) or not recipe or len(recipe) > 128:
            raise BadRequest("'recipe' must be an effect or recipe name, or a recipe id", field="recipe")
        raw = body.get("inputs")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("'inputs' must be a non-empty list, one entry per run", field="inputs")
        if len(raw) > limit:
            raise BadRequest(f"a batch has at most {limit} runs; got {len(raw)}", field="inputs")
        inputs: list[list[str] | dict[str, str]] = []
        for index, entry in enumerate(raw):
            if isinstance(entry, str):
                entry = [entry]
            if not _input_set(entry):
                raise BadRequest(f"inputs[{index}] must be a hash or asset name, a list of them, or a "
                                 "{name: hash} object", field=f"inputs[{index}]")
            inputs.append(entry)
        output_name, params = parse_output_and_params(body)
        return cls(recipe, inputs, output_name, params, parse_priority(body.get("priority", 0)),
                   parse_flag(body, "paused"))


def _input_set(entry: object) -> bool:
    """One run's inputs: a list of references, or a {name: reference} map (as `POST /runs` takes)."""
    if isinstance(entry, list):
        return len(entry) <= 64 and all(isinstance(i, str) for i in entry)
    return isinstance(entry, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items())


def new_batch_id() -> str:
    return secrets.token_hex(BATCH_ID_LENGTH // 2)


class BatchService:
    """Creating, reading and acting on batches, and bulk actions on runs, over a `RunService`."""

    def __init__(self, runs: RunService) -> None:
        self.runs, self.state = runs, runs.state

    def create(self, submission: BatchSubmission, user: User,
               admit: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Check everything, then start every run; the batch record with its run ids."""
        self.runs.check_priority(submission.priority, user)
        recipe, config_id = self.runs.resolve_recipe(submission.recipe, user, submission.params)
        bound = []
        for index, inputs in enumerate(submission.inputs):
            try:
                bound.append(self.runs.bind(recipe, inputs, user))
            except L1Error as exc:  # the same status, naming the run it belongs to
                raise type(exc)(f"inputs[{index}]: {exc.message}", **{**exc.details, "index": index}) from None
        if admit is not None:
            admit(len(bound))  # all the runs, or none (429)
        ref = config_id or submission.recipe
        run_ids: list[str] = []
        for inputs in bound:
            run, _ = self.runs.submit(Submission(ref, inputs, submission.output_name, submission.params,
                                                 paused=submission.paused, priority=submission.priority), user)
            run_ids.append(run["id"])
        return self.state.batches.create(new_batch_id(), owner=user.name, run_ids=run_ids, fields={
            "recipe_name": recipe.name, "recipe_id": recipe.id, "config_id": config_id or "", "recipe_ref": ref})

    def get(self, batch_id: str, user: User) -> dict[str, Any]:
        """The batch if this user owns it (or is an admin); the same 404 for anyone else's."""
        batch = self.state.batches.get(batch_id) if _is_batch_id(batch_id) else None
        if batch is None or not (user.is_admin or batch.get("owner") == user.name):
            raise NotFound(f"no batch {batch_id[:64]!r}")
        return batch

    def view(self, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The batch's runs that still exist (in input order) and how many are in each status."""
        found = self.state.runs.many(batch["runs"])
        runs = [found[run_id] for run_id in dict.fromkeys(batch["runs"]) if run_id in found]
        counts = {str(s): 0 for s in RunStatus}
        for run in runs:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        counts["deleted"] = len(dict.fromkeys(batch["runs"])) - len(runs)
        return runs, counts

    def bulk(self, action: str, run_ids: list[str], user: User,
             admit: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
        """Apply `action` to each run; {run id: {"ok": bool, "status" or "error"}} in the given order."""
        if action not in BULK_ACTIONS:
            raise BadRequest(f"unknown action {action[:32]!r}; one of: {', '.join(BULK_ACTIONS)}", field="action")
        if not run_ids:
            raise BadRequest("choose at least one run", field="runs")
        if len(run_ids) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} runs at once; got {len(run_ids)}", field="runs")
        act: dict[str, Callable[[str, User], object]] = {
            "cancel": self.runs.cancel, "pause": self.runs.pause, "resume": self.runs.resume,
            "requeue": lambda run_id, who: self.runs.requeue(run_id, who, admit=admit),
            "delete": self.runs.delete,
        }
        results: dict[str, dict[str, Any]] = {}
        for run_id in dict.fromkeys(run_ids):
            try:
                done = act[action](run_id, user)
            except L1Error as exc:
                results[run_id] = {"ok": False, "status": exc.status, "error": exc.message}
                continue
            results[run_id] = {"ok": True, **({"run_status": done["status"]} if isinstance(done, dict) else {})}
        return results

    def delete(self, batch: dict[str, Any], user: User) -> dict[str, dict[str, Any]]:
        """Delete the batch's runs (live ones are refused, each saying so) and, when none is
        left, the batch itself."""
        results = self.bulk("delete", list(batch["runs"]), user) if batch["runs"] else {}
        runs, _ = self.view(batch)
        if not runs:
            self.state.batches.delete(batch["id"], batch["owner"])
        return results


def _is_batch_id(value: str) -> bool:
    return len(value) == BATCH_ID_LENGTH and all(c in "0123456789abcdef" for c in value)
