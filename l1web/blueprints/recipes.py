"""Recipes (the seed's "configs"): the JSON API under `/configs` and the pages `/recipes`, `/recipe/<id>`.

An upload is parsed and validated completely before anything is stored, so a refused recipe
leaves Redis as it was; the config id is the recipe's id (SHA3 of its canonical form).
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from l1web.auth import limit_run_submission
from l1web.blueprints.runs import run_response
from l1web.engine.canonical import DIGEST_RE
from l1web.errors import BadRequest, Conflict, Forbidden, L1Error, NotFound
from l1web.recipes.parse import MAX_RECIPE_BYTES, Recipe, RecipeError, parse_recipe, recipe_from_data
from l1web.runs.service import Submission
from l1web.state import MAX_OFFSET
from l1web.users import User
from l1web.web import current, dagsvg
from l1web.web.requests import json_body, signed_in

bp = Blueprint("recipes", __name__)

#: Recipes per page of a listing.
PAGE_SIZE = 50
#: Media items offered per input on a recipe's run form.
MEDIA_CHOICES = 200
#: Form field prefix of a variable input on the run form (`input.<name>`).
INPUT_FIELD = "input."


# Domain helpers ------------------------------------------------------------------------------
def uploaded_text() -> bytes:
    """The YAML of an upload: a multipart `file`, a form field `yaml`, or the raw body."""
    upload = request.files.get("file")
    if upload is not None and (upload.filename or not request.form.get("yaml")):
        data = upload.stream.read(MAX_RECIPE_BYTES + 1)
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data = request.form.get("yaml", "").encode("utf-8")
    else:
        data = request.stream.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise BadRequest(f"the recipe is larger than the limit of {MAX_RECIPE_BYTES} bytes")
    return data


def save_recipe(data: bytes, user: User) -> tuple[dict, bool]:
    """Validate, then store for `user`; (config, created). BadRequest says where it is wrong."""
    try:
        recipe = parse_recipe(data)
    except RecipeError as exc:
        raise BadRequest(str(exc), line=exc.line, column=exc.column, node=exc.node, field=exc.field) from None
    current.runs().check_fixed_inputs(recipe, user)  # a recipe is no way round the ownership rule
    created = current.state().recipes.save(recipe.id, name=recipe.name, owner=user.name,
                                           yaml_text=data.decode("utf-8"), recipe=recipe.to_dict())
    return lookup(recipe.id, user), created


def lookup(config_id: str, user: User) -> dict:
    """The config if this user may see it; the same 404 for unknown and for someone else's."""
    configs = current.state().recipes
    config = configs.get(config_id) if DIGEST_RE.fullmatch(config_id) else None
    if config is None or not configs.visible_to(config, user):
        raise NotFound(f"no recipe {config_id[:64]!r}")
    return config


def remove(config_id: str, user: User) -> None:
    config = lookup(config_id, user)
    if user.name not in config["owners"]:
        raise Forbidden("only the recipe's owners can delete it")
    using = current.state().recipes.delete(config_id, user.name)
    if using:
        shown = ", ".join(run_id[:12] for run_id in using[:5]) + (" …" if len(using) > 5 else "")
        raise Conflict(f"{len(using)} run(s) still use this recipe ({shown}); delete them first",
                       runs=using)


def share_recipe(config_id: str, user: User, shared: bool) -> dict:
    """Share (or stop sharing) one of the user's recipes with every signed-in user."""
    config = lookup(config_id, user)
    if not (user.is_admin or user.name in config["owners"]):
        raise Forbidden("only the recipe's owners can share it")
    current.state().recipes.set_shared(config_id, shared)
    return lookup(config_id, user)


def run_recipe(config_id: str, body: dict, user: User) -> tuple[dict, bool]:
    lookup(config_id, user)
    if "recipe" in body:
        raise BadRequest("unknown field 'recipe': the recipe is the one in the URL", field="recipe")
    return current.runs().submit(Submission.from_json({**body, "recipe": config_id}), user,
                                 admit=limit_run_submission)


def config_json(config: dict, user: User, *, full: bool = False) -> dict:
    recipe = recipe_from_data(config["recipe"])
    out = {
        "id": config["id"], "name": recipe.name, "version": recipe.version,
        "description": recipe.description, "variable_inputs": recipe.variable_inputs,
        "nodes": len(recipe.dag.nodes), "output": recipe.dag.output,
        "created": float(config.get("created") or 0), "shared": bool(config.get("shared")),
        "links": {"self": f"/configs/{config['id']}", "run": f"/configs/{config['id']}/run",
                  "page": f"/recipe/{config['id']}"},
    }
    if user.is_admin:
        out["owners"] = config["owners"]
    if full:
        out.update(yaml=config.get("yaml", ""), recipe=config["recipe"])
    return out


def _page_of_configs(user: User) -> tuple[list[dict], int, int]:
    try:
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        raise BadRequest("'offset' must be a whole number") from None
    if offset > MAX_OFFSET:
        raise BadRequest(f"'offset' must be at most {MAX_OFFSET}", field="offset")
    configs, total = current.state().recipes.page(user=None if user.is_admin else user.name,
                                                  offset=offset, limit=PAGE_SIZE)
    return configs, total, offset


# JSON API -------------------------------------------------------------------------------------
@bp.post("/configs/upload")
def upload():
    user = signed_in()
    config, created = save_recipe(uploaded_text(), user)
    return jsonify(config_json(config, user)), 201 if created else 200


@bp.get("/configs")
def list_configs():
    user = signed_in()
    configs, total, offset = _page_of_configs(user)
    return jsonify({"configs": [config_json(c, user) for c in configs], "total": total,
                    "offset": offset, "limit": PAGE_SIZE})


@bp.get("/configs/<config_id>")
def show(config_id: str):
    user = signed_in()
    return jsonify(config_json(lookup(config_id, user), user, full=True))


@bp.delete("/configs/<config_id>")
def delete(config_id: str):
    remove(config_id, signed_in())
    return jsonify({"id": config_id, "deleted": True})


@bp.post("/configs/<config_id>/share")
def share(config_id: str):
    user = signed_in()
    return jsonify(config_json(share_recipe(config_id, user, True), user))


@bp.delete("/configs/<config_id>/share")
def unshare(config_id: str):
    user = signed_in()
    return jsonify(config_json(share_recipe(config_id, user, False), user))


@bp.post("/configs/<config_id>/run")
def run(config_id: str):
    run, created = run_recipe(config_id, json_body(), signed_in())
    return run_response(run, 201 if created else 200)


# Pages ----------------------------------------------------------------------------------------
@bp.get("/recipes")
def index():
    configs, total, offset = _page_of_configs(signed_in())
    return render_template("recipes.html", configs=configs, total=total, offset=offset,
                           page_size=PAGE_SIZE, error=None, yaml_text="", shared=current.state().recipes.shared())


@bp.post("/recipes")
def upload_form():
    user = signed_in()
    try:
        config, created = save_recipe(uploaded_text(), user)
    except BadRequest as exc:
        configs, total, offset = _page_of_configs(user)
        return render_template("recipes.html", configs=configs, total=total, offset=offset,
                               page_size=PAGE_SIZE, error=exc, yaml_text=request.form.get("yaml", ""),
                               shared=current.state().recipes.shared()), 400
    flash(f"Recipe {config['name']} {'uploaded' if created else 'was already here'}.", "info")
    return redirect(url_for("recipes.page", config_id=config["id"]), code=303)


def _media_choices(user: User) -> dict:
    cache = current.state().cache
    own = cache.list(limit=MEDIA_CHOICES, owner=user.name).items
    mine = {m.digest for m in own}
    shared = [m for m in cache.shared(MEDIA_CHOICES) if m.digest not in mine]
    return {"media": own + shared, "assets": cache.assets()}


@bp.get("/recipe/<config_id>")
def page(config_id: str):
    user = signed_in()
    config = lookup(config_id, user)
    recipe: Recipe = recipe_from_data(config["recipe"])
    dag = dagsvg.render(dagsvg.from_dag(recipe.dag.to_dict()), title=f"Recipe {recipe.name}")
    return render_template("recipe.html", config=config, recipe=recipe, dag=dag,
                           is_owner=user.name in config["owners"], **_media_choices(user))



@bp.post("/recipe/<config_id>/run")
def run_form(config_id: str):
    """The Run button: start (or find) the run, then show it; a refusal goes back to the form."""
    user = signed_in()
    inputs = {k[len(INPUT_FIELD):]: v for k, v in request.form.items() if k.startswith(INPUT_FIELD)}
    body = {"inputs": inputs, "output_name": request.form.get("output_name") or None}
    lookup(config_id, user)  # an unknown recipe is a 404 page, not a message on a form
    try:
        run, created = run_recipe(config_id, body, user)
    except L1Error as exc:
        flash(exc.message, "error")
        return redirect(url_for("recipes.page", config_id=config_id), code=303)
    if not created:
        flash("The same run already exists; here it is.", "info")
    return redirect(url_for("runs.page", run_id=run["id"]), code=303)


@bp.post("/recipe/<config_id>/share")
def share_form(config_id: str):
    """The Share / Stop sharing button on a recipe's page."""
    shared = request.form.get("shared", "1") == "1"
    share_recipe(config_id, signed_in(), shared)
    flash("Recipe shared with every signed-in user." if shared else "Recipe no longer shared.", "info")
    return redirect(url_for("recipes.page", config_id=config_id), code=303)


@bp.post("/recipe/<config_id>/delete")
def delete_form(config_id: str):
    try:
        remove(config_id, signed_in())
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for("recipes.page", config_id=config_id), code=303)
    flash("Recipe deleted.", "info")
    return redirect(url_for("recipes.index"), code=303)
