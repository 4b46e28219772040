"""Saving, finding, sharing, deleting and running recipes: what the recipe routes call.

A recipe (the seed's "config") is parsed and validated completely before anything is stored, so a
refused one leaves Redis as it was; its id is the recipe's id (SHA3 of its canonical form). Who may
see one is the rule in `l1web.access` (its owners, admins, everyone once shared); someone else's
private recipe answers exactly like an unknown id. No web framework here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from l1web import access
from l1web.engine.canonical import DIGEST_RE
from l1web.errors import BadRequest, Conflict, Forbidden, NotFound
from l1web.recipes.errors import RecipeError
from l1web.recipes.parse import parse_recipe, recipe_from_data
from l1web.runs.service import RunService, Submission
from l1web.state import StateManager
from l1web.users import User

#: A saved recipe as `l1web.state.recipes.Recipes.get` returns it.
Config = dict[str, Any]


class RecipeService:
    """The recipe actions; the run service is the one that starts a recipe's runs."""

    def __init__(self, state: StateManager, runs: RunService) -> None:
        self.state, self.runs = state, runs

    def save(self, data: bytes, user: User) -> tuple[Config, bool]:
        """Validate, then store for `user`; (config, created). BadRequest says where it is wrong."""
        try:
            recipe = parse_recipe(data)
        except RecipeError as exc:
            raise BadRequest(str(exc), line=exc.line, column=exc.column, node=exc.node, field=exc.field) from None
        self.runs.check_fixed_inputs(recipe, user)  # a recipe is no way round the ownership rule
        created: bool = self.state.recipes.save(recipe.id, name=recipe.name, owner=user.name,
                                                yaml_text=data.decode("utf-8"), recipe=recipe.to_dict())
        return self.get(recipe.id, user), created

    def get(self, config_id: str, user: User) -> Config:
        """The config if this user may see it; the same 404 for unknown and for someone else's."""
        configs = self.state.recipes
        config: Config | None = configs.get(config_id) if DIGEST_RE.fullmatch(config_id) else None
        if config is None or not configs.visible_to(config, user):
            raise NotFound(f"no recipe {config_id[:64]!r}")
        return config

    def page(self, user: User, *, offset: int, limit: int) -> tuple[list[Config], int]:
        """A page of the recipes `user` owns (every recipe for admins), newest first; (page, total)."""
        configs: list[Config]
        configs, total = self.state.recipes.page(user=access.listing_owner(user, None), offset=offset, limit=limit)
        return configs, total

    def remove(self, config_id: str, user: User) -> None:
        """Delete the user's copy; 409 naming the runs that still use it."""
        config = self.get(config_id, user)
        if user.name not in config["owners"]:
            raise Forbidden("only the recipe's owners can delete it")
        using: list[str] = self.state.recipes.delete(config_id, user.name)
        if using:
            shown = ", ".join(run_id[:12] for run_id in using[:5]) + (" …" if len(using) > 5 else "")
            raise Conflict(f"{len(using)} run(s) still use this recipe ({shown}); delete them first",
                           runs=using)

    def share(self, config_id: str, user: User, shared: bool) -> Config:
        """Share (or stop sharing) one of the user's recipes with every signed-in user."""
        config = self.get(config_id, user)
        if not access.owns(user, config["owners"]):
            raise Forbidden("only the recipe's owners can share it")
        self.state.recipes.set_shared(config_id, shared)
        return self.get(config_id, user)

    def run(self, config_id: str, body: dict[str, Any], user: User,
            admit: Callable[[], None] | None = None) -> tuple[dict[str, Any], bool]:
        """Start (or find) a run of this recipe with `body`'s inputs; (run, created), as `RunService.submit`."""
        self.get(config_id, user)
        if "recipe" in body:
            raise BadRequest("unknown field 'recipe': the recipe is the one in the URL", field="recipe")
        return self.runs.submit(Submission.from_json({**body, "recipe": config_id}), user, admit=admit)

    def describe(self, config: Config, user: User, *, full: bool = False) -> dict[str, Any]:
        """What the API tells of a config (without links); owners for admins, the YAML when `full`."""
        recipe = recipe_from_data(config["recipe"])
        out: dict[str, Any] = {
            "id": config["id"], "name": recipe.name, "version": recipe.version,
            "description": recipe.description, "variable_inputs": recipe.variable_inputs,
            "nodes": len(recipe.dag.nodes), "output": recipe.dag.output,
            "created": float(config.get("created") or 0), "shared": bool(config.get("shared")),
        }
        if user.is_admin:
            out["owners"] = config["owners"]
        if full:
            out.update(yaml=config.get("yaml", ""), recipe=config["recipe"])
        return out

    def input_choices(self, user: User, limit: int) -> dict[str, Any]:
        """What a recipe's run form offers as inputs: the user's own media, media shared with
        everyone (up to `limit` of each) and the named assets."""
        cache = self.state.cache
        own = cache.list(limit=limit, owner=user.name).items
        mine = {m.digest for m in own}
        shared = [m for m in cache.shared(limit) if m.digest not in mine]
        return {"media": own + shared, "assets": cache.assets()}
