"""Recipes (the seed's "configs"): YAML documents that define reusable DAG pipelines.

`parse_recipe` turns untrusted YAML text into a validated `Recipe` or raises `RecipeError`
naming the line and column, or the node and field. Only `yaml.SafeLoader` is used; documents
over a size cap, and anchors/aliases that expand past a limit, are refused while parsing,
before anything is built from them (`yaml_guard.py`). `bound_dag` turns a run's stored recipe plus its
inputs into a plain engine DAG whose SOURCE nodes all carry content hashes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from l1web.engine.canonical import DIGEST_RE, sha3_json
from l1web.engine.dag import Dag, Node, parse_dag, validate
from l1web.engine.effects import EffectError, get_effect
from l1web.engine.errors import DagError
from l1web.recipes.errors import RecipeError
from l1web.recipes.yaml_guard import load_yaml

#: Largest recipe document accepted, in bytes.
MAX_RECIPE_BYTES = 256 * 1024
#: Recipe names: what users type on the command line; no markup, no paths.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
#: Longest description kept, in characters.
MAX_DESCRIPTION = 2000
TOP_LEVEL_KEYS = frozenset({"name", "version", "description", "registry", "dag"})


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe. `dag` has every config filled with its defaults."""

    name: str
    version: str
    description: str
    effects: dict[str, str]  # effect name → effect hash
    assets: dict[str, str]  # asset name → content hash
    dag: Dag

    @cached_property
    def id(self) -> str:
        """SHA3-256 of the canonical form: spelling and key order never change it (hashed once)."""
        return sha3_json(self.to_dict())

    @property
    def variable_inputs(self) -> list[str]:
        """Names of the inputs a run must supply (SOURCE nodes with `input: true`)."""
        return [_input_name(node) for node in self.dag.nodes.values()
                if node.type == "SOURCE" and node.config.get("input")]

    @property
    def fixed_hashes(self) -> list[str]:
        """Content hashes the recipe itself names (registry.assets, `hash:` SOURCEs), sorted."""
        fixed = set(self.assets.values())
        fixed.update(node.config["hash"] for node in self.dag.nodes.values()
                     if node.type == "SOURCE" and node.config.get("hash"))
        return sorted(fixed)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "registry": {
                "effects": {name: {"hash": digest} for name, digest in sorted(self.effects.items())},
                "assets": {name: {"hash": digest} for name, digest in sorted(self.assets.items())},
            },
            "dag": self.dag.to_dict(),
        }


def parse_recipe(text: str | bytes) -> Recipe:
    """A validated recipe from YAML text, or RecipeError."""
    if isinstance(text, bytes):
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe is {len(text)} bytes; the limit is {MAX_RECIPE_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"recipe is not UTF-8 text (byte {exc.start})") from None
    if len(text.encode("utf-8")) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe is larger than the limit of {MAX_RECIPE_BYTES} bytes")
    if not text.strip():
        raise RecipeError("recipe is empty")
    return recipe_from_data(load_yaml(text))


def recipe_from_data(data: object) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a YAML mapping with name, dag and optional registry")
    unknown = sorted(str(key) for key in data if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise RecipeError(f"unknown top-level key {unknown[0]!r} (allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})",
                          field=unknown[0])
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RecipeError("'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit", field="name")
    version = data.get("version", "1")
    if isinstance(version, bool) or not isinstance(version, str | int | float):
        raise RecipeError("'version' must be a string", field="version")
    description = data.get("description", "") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise RecipeError(f"'description' must be text of at most {MAX_DESCRIPTION} characters",
                          field="description")
    effects, assets = _registry(data.get("registry") or {})
    try:
        dag = validate(parse_dag(data.get("dag")))
    except DagError as exc:
        raise RecipeError(str(exc), node=exc.node, field=exc.field) from None
    _check_sources_and_effects(dag, effects, assets)
    return Recipe(name, str(version), description, effects, assets, dag)


def _registry(registry: object) -> tuple[dict[str, str], dict[str, str]]:
    if not isinstance(registry, dict):
        raise RecipeError("'registry' must be a mapping with 'effects' and/or 'assets'", field="registry")
    unknown = sorted(str(k) for k in registry if k not in {"effects", "assets"})
    if unknown:
        raise RecipeError(f"unknown registry key {unknown[0]!r}", field=f"registry.{unknown[0]}")
    return (_hash_table(registry.get("effects") or {}, "effects"),
            _hash_table(registry.get("assets") or {}, "assets"))


def _hash_table(table: object, section: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise RecipeError(f"registry.{section} must be a mapping of name → {{hash: ...}}",
                          field=f"registry.{section}")
    out: dict[str, str] = {}
    for name, entry in table.items():
        where = f"registry.{section}.{name}"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise RecipeError(f"{section[:-1]} name {str(name)[:64]!r} is not a valid name",
                              field=f"registry.{section}")
        digest = entry.get("hash") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise RecipeError(f"{where}.hash must be 64 lower-case hex characters (SHA3-256)",
                              field=f"{where}.hash")
        out[name] = digest
    return out


def _check_sources_and_effects(dag: Dag, effects: Mapping[str, str], assets: Mapping[str, str]) -> None:
    seen_inputs: set[str] = set()
    for node in dag.nodes.values():
        if node.type == "SOURCE":
            _check_source(node, assets, seen_inputs)
        elif node.type == "EFFECT":
            _check_effect(node, effects)


def _check_source(node: Node, assets: Mapping[str, str], seen_inputs: set[str]) -> None:
    config = node.config
    modes = [bool(config.get("input")), config.get("asset") is not None, config.get("hash") is not None]
    if sum(modes) != 1:
        raise RecipeError("a SOURCE needs exactly one of 'input: true', 'asset: <name>' or 'hash'",
                          node=node.id, field="config")
    if config.get("input"):
        name = _input_name(node)
        if not NAME_RE.fullmatch(name):
            raise RecipeError("input name must be letters, digits, '.', '_' or '-'", node=node.id,
                              field="config.name")
        if name in seen_inputs:
            raise RecipeError(f"two variable inputs are named {name!r}", node=node.id, field="config.name")
        seen_inputs.add(name)
    elif config.get("asset") is not None and config["asset"] not in assets:
        raise RecipeError(f"asset {config['asset']!r} is not listed in registry.assets",
                          node=node.id, field="config.asset")


def _check_effect(node: Node, effects: Mapping[str, str]) -> None:
    ref = node.config["effect"]
    try:
        effect = get_effect(ref)
    except EffectError as exc:
        raise RecipeError(str(exc), node=node.id, field="config.effect") from None
    declared = effects.get(effect.name)
    if declared is not None and declared != effect.hash:
        raise RecipeError(
            f"registry.effects.{effect.name}.hash does not match this server's {effect.name} "
            f"({effect.hash})", node=node.id, field="config.effect")
    # Its params need no second look: `validate` resolved them (engine/dag.py: _check_effect).


def _input_name(node: Node) -> str:
    return str(node.config.get("name") or node.id)


def bound_dag(stored: object, inputs: Mapping[str, str]) -> Dag:
    """A run's DAG with every SOURCE bound to a content hash, for the plan job.

    `stored` is the recipe as the run record keeps it (`Recipe.to_dict()`) and `inputs` the run's
    `input_hashes` (input name → content hash). Both were checked when the run was submitted
    (`parse_recipe`/`effect_recipe`, then `RunService.bind` for the input names and hashes), and
    planning validates the DAG again (`engine/plan.py`), so this only puts the hashes in: a stored
    run's recipe is not parsed and checked a second time. A record that lacks one is a RecipeError.
    """
    if not isinstance(stored, Mapping):
        raise RecipeError("the run's stored recipe is not a mapping")
    try:
        dag = parse_dag(stored.get("dag"))
    except DagError as exc:
        raise RecipeError(str(exc), node=exc.node, field=exc.field) from None
    assets = stored.get("registry", {}).get("assets", {})
    nodes = {}
    for node_id, node in dag.nodes.items():
        config = node.config
        if node.type == "SOURCE" and config.get("hash") is None:
            if config.get("input"):
                what, digest = f"input {_input_name(node)!r}", inputs.get(_input_name(node))
            else:
                what, digest = f"asset {config.get('asset')!r}", assets.get(config.get("asset"), {}).get("hash")
            if not isinstance(digest, str):
                raise RecipeError(f"the run has no content hash for its {what}", node=node.id, field="config")
            node = Node(node.id, node.type, {**config, "hash": digest}, node.inputs)
        nodes[node_id] = node
    return Dag(nodes, dag.output)


def effect_recipe(effect_ref: str, params: Mapping[str, object] | None = None) -> Recipe:
    """The one-step recipe a bare effect name stands for: one input, through the effect."""
    try:
        effect = get_effect(effect_ref)
    except EffectError as exc:
        raise RecipeError(str(exc), field="recipe") from None
    return recipe_from_data({
        "name": effect.name,
        "version": "1",
        "description": f"The {effect.name} effect on one input",
        "registry": {"effects": {effect.name: {"hash": effect.hash}}},
        "dag": {
            "nodes": [
                {"id": "input", "type": "SOURCE", "config": {"input": True, "name": "input"}},
                {"id": effect.name, "type": "EFFECT", "config": {"effect": effect.name, "params": dict(params or {})},
                 "inputs": ["input"]},
            ],
            "output": effect.name,
        },
    })
