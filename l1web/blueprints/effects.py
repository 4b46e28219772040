"""`GET /effects`: the effects this server runs, with their ids and parameter schemas."""

from __future__ import annotations

from flask import Blueprint, jsonify

from l1web.engine.effects import EffectError, get_effect, list_effects
from l1web.errors import NotFound

bp = Blueprint("effects", __name__)


@bp.get("/effects")
def index():
    return jsonify({"effects": [effect.to_json() for effect in list_effects()]})


@bp.get("/effects/<ref>")
def show(ref: str):
    try:
        return jsonify(get_effect(ref).to_json())
    except EffectError:
        raise NotFound(f"no effect named or hashed {ref[:64]!r}") from None
