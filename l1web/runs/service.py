"""Starting, listing and managing runs: what the routes call (one function per action)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from l1web import access, lifecycle, trace
from l1web.engine.canonical import DIGEST_RE
from l1web.errors import BadRequest, Conflict, Forbidden, NotFound
from l1web.lifecycle import RunEvent, StepEvent
from l1web.recipes.errors import RecipeError
from l1web.recipes.parse import Recipe, effect_recipe, recipe_from_data
from l1web.runs import progress
from l1web.runs.model import Run, RunStatus, StepStatus, legacy_run_id_for, run_id_for
from l1web.state import StateManager
from l1web.state.fair import plan_piece
from l1web.store import ContentStore
from l1web.users import User

log = logging.getLogger(__name__)

#: Longest output name accepted, in characters.
MAX_OUTPUT_NAME = 128
OUTPUT_NAME_RE = re.compile(r"^[\w .,()+-]{1,128}\Z")


@dataclass(frozen=True)
class Submission:
    recipe: str
    inputs: list[str] | dict[str, str] = field(default_factory=list)
    output_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    paused: bool = False
    priority: int = 0
    #: Where to POST the run's end (checked by the caller: `l1web.notify`); "" for the owner's default.
    notify_url: str = ""

    @classmethod
    def from_json(cls, body: object) -> Submission:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object with 'recipe' and 'inputs'")
        unknown = sorted(set(body) - {"recipe", "inputs", "output_name", "params", "force", "paused", "priority",
                                      "notify_url"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        recipe = body.get("recipe")
        if not isinstance(recipe, str) or not recipe or len(recipe) > 128:
            raise BadRequest("'recipe' must be an effect or recipe name, or a recipe id", field="recipe")
        inputs = body.get("inputs", [])
        if isinstance(inputs, list):
            if not all(isinstance(i, str) for i in inputs) or len(inputs) > 64:
                raise BadRequest("'inputs' must be a list of hashes or asset names", field="inputs")
        elif isinstance(inputs, dict):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
                raise BadRequest("'inputs' must map input names to hashes or asset names", field="inputs")
        else:
            raise BadRequest("'inputs' must be a list or an object", field="inputs")
        output_name, params = parse_output_and_params(body)
        force, paused = parse_flag(body, "force"), parse_flag(body, "paused")
        notify_url = body.get("notify_url") or ""
        if not isinstance(notify_url, str):
            raise BadRequest("'notify_url' must be an http(s) URL", field="notify_url")
        return cls(recipe, inputs, output_name, params, force, paused, parse_priority(body.get("priority", 0)),
                   notify_url)


#: Lowest and highest run priority; higher runs first. Owners may go up to USER_MAX_PRIORITY.
PRIORITY_RANGE = (-10, 10)


def parse_output_and_params(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """A submission's `output_name` (None: the default) and `params` (a JSON object), checked."""
    output_name = body.get("output_name")
    if output_name is not None and (not isinstance(output_name, str) or not OUTPUT_NAME_RE.fullmatch(output_name)):
        raise BadRequest("'output_name' must be 1-128 letters, digits, spaces or . , ( ) + - _",
                         field="output_name")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object", field="params")
    return output_name, params


def parse_flag(body: dict[str, Any], name: str) -> bool:
    """A true/false field of a submission (false when absent)."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false", field=name)
    return value


def parse_priority(value: object) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"'priority' must be a whole number from {low} to {high}", field="priority")
    return value


def renders_one_step(recipe: Recipe) -> bool:
    """True when the recipe has one node to render (the rest are sources): its plan job renders it."""
    return sum(1 for node in recipe.dag.nodes.values() if node.type != "SOURCE") == 1


def _stored_renders_one_step(run: dict[str, Any]) -> bool:
    try:
        return renders_one_step(recipe_from_data(run["recipe"]))
    except (KeyError, TypeError, RecipeError):
        return False  # a record without a usable recipe: its plan job will say why


class EnqueuePlan(Protocol):
    """Puts a run's plan job on the queue (the job layer's `enqueue_plan`, bound to its connection)."""

    def __call__(self, run_id: str, attempt: int, *, render_inline: bool = False, filed: bool = False) -> object:
        """`filed`: the plan's piece is already in the fair-share pool (`state/submissions.py` filed
        it with the run's record); only its token is to go on the queue."""


class EnqueueAdvance(Protocol):
    """Puts a job on the queue that enqueues a run's ready steps (after a resume or a requeue)."""

    def __call__(self, run_id: str) -> object: ...


class StopPiece(Protocol):
    """Stops the RQ job `rq_job` while it renders the piece `piece_id` (the job layer's
    `stop_piece`, bound to its connection); False when it is not running anywhere."""

    def __call__(self, rq_job: str, piece_id: str) -> object: ...


class TokenCommands(Protocol):
    """The commands that put a token of a kind of work on its queue, unsent (the job layer's
    `token_commands`, bound to its connection): sent with a new run's record, only if it is written."""

    def __call__(self, kind: str) -> list[tuple[Any, ...]]: ...


class EnqueueEnded(Protocol):
    """Puts a job on the queue that does what a run's end entails off the request path (its
    notify URL's delivery), for ends decided by a request (a cancel); workers call it themselves."""

    def __call__(self, run_id: str) -> object: ...


class RunService:
    """Submitting, viewing, cancelling and re-running runs; the job layer is injected, not imported."""

    def __init__(self, state: StateManager, store: ContentStore, rq_connection: redis.Redis,
                 enqueue_plan: EnqueuePlan, enqueue_advance: EnqueueAdvance | None = None, *,
                 user_max_priority: int = 0, enqueue_ended: EnqueueEnded | None = None,
                 stop_piece: StopPiece | None = None, token_commands: TokenCommands | None = None) -> None:
        self.state, self.store, self.rq = state, store, rq_connection
        self.stop_piece = stop_piece
        self.enqueue_plan = enqueue_plan
        self.token_commands = token_commands
        self.enqueue_advance = enqueue_advance
        self.enqueue_ended = enqueue_ended
        self.user_max_priority = user_max_priority

    # Submitting ----------------------------------------------------------------------------
    def resolve_recipe(self, ref: str, user: User, params: Mapping[str, object]) -> tuple[Recipe, str | None]:
        """(recipe, config id) for an effect name/hash, a recipe id, or one of the user's recipe names."""
        config_id = ref if DIGEST_RE.fullmatch(ref) else self.state.recipes.id_for_name(user.name, ref)
        if config_id:
            config = self.state.recipes.get(config_id)
            if config and self.state.recipes.visible_to(config, user):
                if params:
                    raise BadRequest("'params' apply to a single effect; put a recipe's parameters in the recipe",
                                     field="params")
                return recipe_from_data(config["recipe"]), config_id
        try:
            return effect_recipe(ref, params), None
        except RecipeError as exc:
            if exc.field == "params":  # the effect exists; its parameters are wrong
                raise BadRequest(str(exc), field="params") from None
            raise NotFound(f"no effect or recipe named {ref!r}", field="recipe") from None

    def may_use(self, user: User, digest: str) -> bool:
        """The one rule (`l1web.access.can_use`) over what the index knows of `digest`."""
        return access.usable(self.state.cache, digest, user)

    def resolve_input(self, ref: str, field_name: str, user: User) -> str:
        if DIGEST_RE.fullmatch(ref):
            # someone else's private or quarantined item answers like an unknown one
            access.require_input(self.state.cache, ref, user, "input", field=field_name)
            return ref
        digest = self.state.cache.asset(ref)
        if digest is None:
            raise NotFound(f"input {ref[:64]!r} is neither a cached hash nor a known asset name",
                           field=field_name)
        return digest

    def check_fixed_inputs(self, recipe: Recipe, user: User) -> None:
        """Every hash the recipe itself names must be usable by `user` (at upload and at run time)."""
        for digest in recipe.fixed_hashes:
            access.require_input(self.state.cache, digest, user, "recipe input", field="recipe")

    def bind(self, recipe: Recipe, inputs: list[str] | dict[str, str], user: User) -> dict[str, str]:
        names = recipe.variable_inputs
        if isinstance(inputs, list):
            if len(inputs) != len(names):
                raise BadRequest(f"{recipe.name} takes {len(names)} input(s) ({', '.join(names) or 'none'}), "
                                 f"got {len(inputs)}", field="inputs")
            inputs = dict(zip(names, inputs, strict=True))
        missing = sorted(set(names) - set(inputs))
        extra = sorted(set(inputs) - set(names))
        if missing or extra:
            what = f"missing input {missing[0]!r}" if missing else f"unexpected input {extra[0]!r}"
            raise BadRequest(f"{what}; {recipe.name} takes: {', '.join(names) or 'none'}", field="inputs")
        bound = {name: self.resolve_input(ref, f"inputs.{name}", user) for name, ref in inputs.items()}
        self.check_fixed_inputs(recipe, user)
        return bound

    def submit(self, submission: Submission, user: User, admit: Callable[[], None] | None = None) -> tuple[Run, bool]:
        """Start a run, or return the existing identical one; (run, created).

        `admit` is called once the submission is valid and would enqueue work (a new run or a
        forced re-run), before anything is written: a rate limit raises there and changes nothing.
        """
        self.check_priority(submission.priority, user)
        read = self._read_at_once(submission, user)
        if read is not None:
            recipe, config_id, input_hashes, run_id, existing = read
        else:
            recipe, config_id = self.resolve_recipe(submission.recipe, user, submission.params)
            input_hashes = self.bind(recipe, submission.inputs, user)
            run_id = run_id_for(user.name, recipe.id, input_hashes, submission.params)
            existing = self._existing(user, run_id, recipe.id, input_hashes, submission.params)
        trace.mark("web.bound")
        if existing:
            run_id = existing["id"]
        if existing and not submission.force:
            return existing, False
        if existing:
            return self.rerun(run_id, user, force=True, admit=admit), False
        if admit is not None:
            admit()
        trace.mark("web.admitted")
        run = {
            "id": run_id, "status": RunStatus.PAUSED if submission.paused else RunStatus.PENDING,
            "created": time.time(), "owner": user.name,
            "recipe_id": recipe.id, "recipe_name": recipe.name, "config_id": config_id or "",
            "recipe": recipe.to_dict(), "input_hashes": input_hashes, "params": submission.params,
            "output_name": submission.output_name or "", "attempt": 1, "force": False,
            "priority": submission.priority,
            "notify_url": submission.notify_url,
        }
        inline = renders_one_step(recipe)
        # One Lua call: the inputs held (an input deleted meanwhile is a 404 with nothing written,
        # never a run that was written but not enqueued), the run and its indexes written, its
        # plan filed in the fair-share pool (a run submitted paused is planned when resumed).
        piece = None if submission.paused else plan_piece(run_id, 1, render_inline=inline)
        # Its token too, when the job layer gives its commands: written only with the run.
        token = self.token_commands(piece["kind"]) if piece is not None and self.token_commands else []
        outcome = self.state.submissions.create(run, input_hashes.values(), config_id=config_id or "",
                                                piece=piece, then=token)
        trace.mark("web.created")
        if isinstance(outcome, str):
            raise NotFound(f"no cached item {outcome}")
        if not outcome:  # an identical run was created meanwhile
            return self.state.runs.get(run_id) or run, False
        if piece is not None and not token:
            self.enqueue_plan(run_id, 1, render_inline=inline, filed=True)
        trace.mark("web.enqueued")
        return self.state.submissions.stored(run), True

    def _read_at_once(self, submission: Submission,
                      user: User) -> tuple[Recipe, None, dict[str, str], str, Run | None] | None:
        """The common submission, an effect by name on inputs by hash, with its reads in one round
        trip (issue 19: the recipe name, the inputs' access and an identical run took four):
        (recipe, no config, bound inputs, the run id, the identical run or None). None for every other
        submission, or when the user has a recipe of that name: `submit` then reads step by step,
        and raises whatever is wrong in the same order."""
        refs = list(submission.inputs.values()) if isinstance(submission.inputs, dict) else list(submission.inputs)
        if DIGEST_RE.fullmatch(submission.recipe) or not all(DIGEST_RE.fullmatch(ref) for ref in refs):
            return None
        try:
            recipe = effect_recipe(submission.recipe, submission.params)
        except RecipeError:
            return None
        names = recipe.variable_inputs
        if recipe.fixed_hashes or len(refs) != len(names) or (
                isinstance(submission.inputs, dict) and set(submission.inputs) != set(names)):
            return None
        bound = dict(submission.inputs) if isinstance(submission.inputs, dict) \
            else dict(zip(names, refs, strict=True))
        run_id = run_id_for(user.name, recipe.id, bound, submission.params)
        config_id, items, run, legacy = self.state.submissions.prefetch(
            user.name, submission.recipe, list(bound.values()), run_id,
            legacy_run_id_for(recipe.id, bound, submission.params))
        if config_id:
            return None  # the user's own recipe of that name: `resolve_recipe` decides
        for (name, digest), item in zip(bound.items(), items, strict=True):
            access.require_input(self.state.cache, digest, user, "input", known=item, field=f"inputs.{name}")
        existing = run if run is not None else legacy if legacy and legacy.get("owner") == user.name else None
        return recipe, None, bound, run_id, existing

    def _existing(self, user: User, run_id: str, recipe_id: str, inputs: Mapping[str, str],
                  params: Mapping[str, Any]) -> Run | None:
        """The run with this id, else this user's identical run under its pre-owner id (runs are
        not rewritten), read in one round trip."""
        run, legacy = self.state.submissions.existing(run_id, legacy_run_id_for(recipe_id, inputs, params))
        if run is not None:
            return run
        return legacy if legacy and legacy.get("owner") == user.name else None

    # Reading -------------------------------------------------------------------------------
    def get(self, run_id: str, user: User) -> Run:
        """The run if this user may see it; the same 404 for unknown and for someone else's."""
        run = self.state.runs.get(run_id) if DIGEST_RE.fullmatch(run_id) else None
        if run is None or not access.owns(user, [run.get("owner") or ""]):
            raise NotFound(f"no run {run_id[:64]!r}")
        return run

    def steps_view(self, run_id: str) -> list[dict[str, Any]]:
        """Each step's description merged with its state and its `progress` (two round trips:
        the steps, then the live progress of those that rendered or render)."""
        _, steps, states = self.state.runs.snapshot(run_id, with_run=False)
        return self._with_progress(run_id, steps, states)

    def view(self, run_id: str, user: User) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """(run, `steps_view`, notification deliveries) if this user may see the run, as `get`
        decides: what the polled views show, in one round trip (`Runs.view`) where `get` +
        `steps_view` + deliveries took four."""
        run, steps, states, deliveries, live = self.state.runs.view(run_id) if DIGEST_RE.fullmatch(run_id) \
            else (None, [], {}, [], {})
        if run is None or not access.owns(user, [run.get("owner") or ""]):
            raise NotFound(f"no run {run_id[:64]!r}")
        return run, self._with_progress(run_id, steps, states, live), deliveries

    def _with_progress(self, run_id: str, steps: list[dict[str, Any]], states: dict[str, dict[str, Any]],
                       live: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        merged = [{**step, **states.get(step["step_id"], {})} for step in steps]
        watched = {s["step_id"] for s in merged if s.get("status") in progress.WATCHED}
        if live is None:
            live = self.state.watch.progress(run_id, watched)
        for step in merged:
            found = live.get(step["step_id"]) if step["step_id"] in watched else None
            step["progress"] = progress.step_progress(step, found)
        return merged

    # Changing ------------------------------------------------------------------------------
    def delete(self, run_id: str, user: User) -> None:
        run = self.get(run_id, user)
        status = RunStatus(run["status"])
        if status.live:
            raise Conflict("the run is still live; cancel it before deleting it", status=status)
        if run.get("published") == "1":
            raise Conflict("the run's output has been published to L2 and cannot be deleted")
        self.state.runs.delete(run_id)
        for digest in run.get("input_hashes", {}).values():
            self.state.cache.remove_ref(digest, f"run:{run_id}")
        if run.get("output_hash"):
            self.state.cache.remove_ref(run["output_hash"], f"run:{run_id}")
        if run.get("config_id"):
            self.state.recipes.remove_ref(run["config_id"], run_id)

    def cancel(self, run_id: str, user: User) -> Run:
        run = self.get(run_id, user)
        if not self.state.runs.transition(run_id, RunEvent.CANCEL, error="cancelled by the user",
                                          finished=time.time()):
            raise Conflict(f"the run is {run['status']}; only pending, running or paused runs can be cancelled")
        self._stop_steps(run_id)
        if self.enqueue_ended is not None:  # this request ended the run (a compare-and-set): once
            try:
                self.enqueue_ended(run_id)
            except Exception:  # noqa: BLE001 - the run is cancelled either way; a worker's log says why
                log.exception("could not enqueue the end of run %s", run_id[:12])
        return self.state.runs.get(run_id) or run

    def _stop_steps(self, run_id: str) -> None:
        from rq.command import send_stop_job_command

        for step_id, step in self.state.runs.step_states(run_id).items():
            status = step.get("status")
            if lifecycle.allowed(status, StepEvent.SKIP):
                self.state.runs.step_transition(run_id, step_id, StepEvent.SKIP, error="run cancelled")
            elif status == StepStatus.RUNNING and (step.get("rq_job") or step.get("job_id")):
                # `job_id` names the attempt (a fair-share piece, `plan-…`/`step-…`); the RQ job
                # rendering it, which is what RQ can stop, is `rq_job` (a token, which may go on to
                # other pieces: the job layer's stop names the piece).
                try:
                    if self.stop_piece is not None and step.get("rq_job") and step.get("job_id"):
                        self.stop_piece(step["rq_job"], step["job_id"])
                    else:
                        send_stop_job_command(self.rq, step.get("rq_job") or step["job_id"])
                except Exception:  # noqa: BLE001 - the job may have just finished
                    pass

    def rerun(self, run_id: str, user: User, *, force: bool = False, admit: Callable[[], None] | None = None) -> Run:
        """Run a failed or cancelled run again (or any finished run when forced)."""
        run = self.get(run_id, user)
        if run.get("published") == "1":
            # Its output and provenance are on L2 as they are: a new render would change them.
            raise Conflict("the run's output has been published to L2; it cannot be rendered again")
        event = RunEvent.FORCE_RERUN if force else RunEvent.RERUN
        attempt = int(run.get("attempt") or 1) + 1
        if admit is not None and lifecycle.allowed(run["status"], event):
            admit()
        if not self.state.runs.transition(run_id, event, attempt=attempt,
                                          error="", output_hash="", finished="", force=force):
            raise Conflict(f"the run is {run['status']}; only failed or cancelled runs can be re-run")
        self.enqueue_plan(run_id, attempt, render_inline=_stored_renders_one_step(run))
        return self.state.runs.get(run_id) or run

    def check_priority(self, priority: int, user: User) -> None:
        if priority > self.user_max_priority and not user.is_admin:
            raise Forbidden(f"priority {priority} is above your ceiling of {self.user_max_priority}",
                            field="priority")

    def set_priority(self, run_id: str, user: User, priority: int) -> Run:
        """Change a live run's priority; its waiting plan or steps move to the new priority at once."""
        run = self.get(run_id, user)
        self.check_priority(priority, user)
        if not RunStatus(run["status"]).live:
            raise Conflict(f"the run is {run['status']}; only a live run's priority can change")
        old = int(run.get("priority") or 0)
        self.state.runs.update(run_id, priority=priority)
        for kind in ("plan", "step"):
            self.state.fair.move(kind, run.get("owner") or "", old, priority, run_id)
        return self.state.runs.get(run_id) or run

    def pause(self, run_id: str, user: User) -> Run:
        """No new step of the run starts (a queued one goes back to waiting); running steps finish."""
        run = self.get(run_id, user)
        if not self.state.runs.transition(run_id, RunEvent.PAUSE, paused_at=time.time()):
            raise Conflict(f"the run is {run['status']}; only pending or running runs can be paused")
        return self.state.runs.get(run_id) or run

    def resume(self, run_id: str, user: User) -> Run:
        """A paused run goes on: planned ones enqueue their ready steps, others are planned now."""
        run = self.get(run_id, user)
        planned = bool(run.get("started"))  # its plan job began (and writes its steps)
        event = RunEvent.RESUME if planned else RunEvent.RELEASE
        if not self.state.runs.transition(run_id, event, paused_at=""):
            raise Conflict(f"the run is {run['status']}; only paused runs can be resumed")
        if planned:
            self._advance(run_id)
        else:
            self.enqueue_plan(run_id, int(run.get("attempt") or 1), render_inline=_stored_renders_one_step(run))
        return self.state.runs.get(run_id) or run

    def requeue(self, run_id: str, user: User, *, admit: Callable[[], None] | None = None) -> Run:
        """Render a failed or cancelled run's unfinished steps again, keeping every completed one.

        A run that never got planned (it failed while planning, or was cancelled before) is
        planned again instead, as a re-run would.
        """
        run = self.get(run_id, user)
        if run.get("published") == "1":
            raise Conflict("the run's output has been published to L2; it cannot be rendered again")
        if not self.state.runs.step_states(run_id):
            return self.rerun(run_id, user, admit=admit)
        if admit is not None and lifecycle.allowed(run["status"], RunEvent.REQUEUE):
            admit()
        attempt = int(run.get("attempt") or 1) + 1
        if not self.state.runs.transition(run_id, RunEvent.REQUEUE, attempt=attempt, error="", finished=""):
            raise Conflict(f"the run is {run['status']}; only failed or cancelled runs can be requeued")
        for step_id, step in self.state.runs.step_states(run_id).items():
            if lifecycle.allowed(step.get("status", ""), StepEvent.REQUEUE):
                self.state.runs.step_transition(run_id, step_id, StepEvent.REQUEUE, error="", queued_job=None,
                                                tries=1, hand_backs=0)
        self._advance(run_id)
        return self.state.runs.get(run_id) or run

    def _advance(self, run_id: str) -> None:
        if self.enqueue_advance is None:
            raise RuntimeError("this RunService was built without the job layer's enqueue_advance")
        self.enqueue_advance(run_id)

    # The whole queue (admins) ------------------------------------------------------------------
    def queue_paused(self) -> bool:
        return self.state.runs.queue_paused()

    def pause_queue(self, user: User) -> None:
        """No new step of any run starts until `resume_queue`; running steps finish."""
        _require_admin(user)
        self.state.runs.set_queue_paused(True)

    def resume_queue(self, user: User) -> int:
        """Steps start again; every running run enqueues its ready steps. How many runs that is."""
        _require_admin(user)
        self.state.runs.set_queue_paused(False)
        running = self.state.runs.ids_with_status(RunStatus.RUNNING)
        for run_id in running:
            self._advance(run_id)
        return len(running)


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("only administrators may pause or resume the whole queue")
