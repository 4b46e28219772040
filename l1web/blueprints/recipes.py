"""Recipes (the seed's "configs"): the JSON API under `/configs` and the pages `/recipes`, `/recipe/<id>`.

Routes only read the request and call `l1web.recipes.service.RecipeService` (`current.recipes()`),
which validates, stores, shares, deletes and runs recipes under the one visibility rule.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from l1web.auth.ratelimit import limit_run_submission
from l1web.errors import BadRequest, Conflict, L1Error
from l1web.recipes.parse import MAX_RECIPE_BYTES, Recipe, recipe_from_data
from l1web.users import User
from l1web.web import current, dagsvg
from l1web.web.current import signed_in
from l1web.web.requests import json_body, paging
from l1web.web.shapes import run_response

bp = Blueprint("recipes", __name__)

#: Recipes per page of a listing.
PAGE_SIZE = 50
#: Media items offered per input on a recipe's run form.
MEDIA_CHOICES = 200
#: Form field prefix of a variable input on the run form (`input.<name>`).
INPUT_FIELD = "input."


# Reading the request ---------------------------------------------------------------------------
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


def config_json(config: dict, user: User, *, full: bool = False) -> dict:
    config_id = config["id"]
    return {**current.recipes().describe(config, user, full=full),
            "links": {"self": f"/configs/{config_id}", "run": f"/configs/{config_id}/run",
                      "page": f"/recipe/{config_id}"}}


def _page_of_configs(user: User) -> tuple[list[dict], int, int]:
    asked = paging(PAGE_SIZE, fixed_limit=True, negative_offset_is_zero=True)
    configs, total = current.recipes().page(user, offset=asked.offset, limit=asked.limit)
    return configs, total, asked.offset


# JSON API -------------------------------------------------------------------------------------
@bp.post("/configs/upload")
def upload():
    user = signed_in()
    config, created = current.recipes().save(uploaded_text(), user)
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
    return jsonify(config_json(current.recipes().get(config_id, user), user, full=True))


@bp.delete("/configs/<config_id>")
def delete(config_id: str):
    current.recipes().remove(config_id, signed_in())
    return jsonify({"id": config_id, "deleted": True})


@bp.post("/configs/<config_id>/share")
def share(config_id: str):
    user = signed_in()
    return jsonify(config_json(current.recipes().share(config_id, user, True), user))


@bp.delete("/configs/<config_id>/share")
def unshare(config_id: str):
    user = signed_in()
    return jsonify(config_json(current.recipes().share(config_id, user, False), user))


@bp.post("/configs/<config_id>/run")
def run(config_id: str):
    run, created = current.recipes().run(config_id, json_body(), signed_in(), admit=limit_run_submission)
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
        config, created = current.recipes().save(uploaded_text(), user)
    except BadRequest as exc:
        configs, total, offset = _page_of_configs(user)
        return render_template("recipes.html", configs=configs, total=total, offset=offset,
                               page_size=PAGE_SIZE, error=exc, yaml_text=request.form.get("yaml", ""),
                               shared=current.state().recipes.shared()), 400
    flash(f"Recipe {config['name']} {'uploaded' if created else 'was already here'}.", "info")
    return redirect(url_for("recipes.page", config_id=config["id"]), code=303)


@bp.get("/recipe/<config_id>")
def page(config_id: str):
    user = signed_in()
    config = current.recipes().get(config_id, user)
    recipe: Recipe = recipe_from_data(config["recipe"])
    dag = dagsvg.render(dagsvg.from_dag(recipe.dag.to_dict()), title=f"Recipe {recipe.name}")
    choices = current.recipes().input_choices(user, MEDIA_CHOICES)
    return render_template("recipe.html", config=config, recipe=recipe, dag=dag,
                           is_owner=user.name in config["owners"], **choices)


@bp.post("/recipe/<config_id>/run")
def run_form(config_id: str):
    """The Run button: start (or find) the run, then show it; a refusal goes back to the form."""
    user = signed_in()
    inputs = {k[len(INPUT_FIELD):]: v for k, v in request.form.items() if k.startswith(INPUT_FIELD)}
    body = {"inputs": inputs, "output_name": request.form.get("output_name") or None}
    current.recipes().get(config_id, user)  # an unknown recipe is a 404 page, not a message on a form
    try:
        run, created = current.recipes().run(config_id, body, user, admit=limit_run_submission)
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
    current.recipes().share(config_id, signed_in(), shared)
    flash("Recipe shared with every signed-in user." if shared else "Recipe no longer shared.", "info")
    return redirect(url_for("recipes.page", config_id=config_id), code=303)


@bp.post("/recipe/<config_id>/delete")
def delete_form(config_id: str):
    try:
        current.recipes().remove(config_id, signed_in())
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for("recipes.page", config_id=config_id), code=303)
    flash("Recipe deleted.", "info")
    return redirect(url_for("recipes.index"), code=303)
