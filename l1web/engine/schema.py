"""Declarative config schemas: key → type, default, range or choices.

One schema per node type serves both validation and default filling, so the config that is
hashed into a cache id is exactly the config the executor reads. Values are normalised on the
way in (`2` and `2.0` for a float key are the same value, colour names become `#rrggbb`) so
that spelling never changes an id, and nothing that is not a finite, in-range value of the
declared type ever reaches a filter graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import ImageColor

from l1web.engine.canonical import DIGEST_RE
from l1web.engine.errors import DagError

#: Longest string accepted for a free-text config value, in characters.
MAX_STRING = 256
#: Marker for a key that has no default and must be given.
REQUIRED = object()
#: A lower-case SHA3-256 hex digest.

Kind = Literal[
    "float", "int", "bool", "str", "choice", "color", "digest", "point", "object", "list",
    "mapping",
]


@dataclass(frozen=True)
class Field:
    """One config key. `object` fields hold a nested schema; `list` fields one `item` per input."""

    kind: Kind
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    schema: Mapping[str, Field] = field(default_factory=dict)
    item: Field | None = None


Schema = Mapping[str, "Field"]
#: A filled config: every key of its schema with a checked, plain JSON value.
Config = dict[str, Any]


def fill(schema: Schema, config: object, *, node: str, n_inputs: int, path: str = "") -> Config:
    """The config with every key validated and every default filled in, or DagError."""
    if not isinstance(config, dict):
        raise DagError(f"must be a mapping, got {_show(config)}", node=node, field=path or None)
    unknown = sorted(str(key) for key in config if key not in schema)
    if unknown:
        allowed = ", ".join(sorted(schema)) or "none"
        raise DagError(
            f"unknown config key (allowed: {allowed})", node=node, field=_join(path, unknown[0])
        )
    return {
        key: check(spec, config.get(key, _missing(spec)), node=node, n_inputs=n_inputs,
                   path=_join(path, key))
        for key, spec in schema.items()
    }


def check(spec: Field, value: object, *, node: str, n_inputs: int, path: str) -> object:
    """One value validated against its field and returned in canonical form."""
    if value is REQUIRED:
        raise DagError("is required", node=node, field=path)
    if value is None and spec.nullable:
        return None
    checker = _CHECKERS[spec.kind]
    return checker(spec, value, node, n_inputs, path)


def _missing(spec: Field) -> object:
    if spec.kind == "object" and spec.default is REQUIRED:
        return {}
    return spec.default


def _number(spec: Field, value: object, node: str, path: str) -> float:
    # bool is an int subclass; a string "2" is a typo we refuse rather than guess at.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DagError(f"must be a number, got {_show(value)}", node=node, field=path)
    # Ints are finite, but math.isfinite() of one past float range raises OverflowError.
    if isinstance(value, float) and not math.isfinite(value):
        raise DagError(f"must be finite, got {value!r}", node=node, field=path)
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise DagError(
            f"must be between {spec.lo} and {spec.hi}, got {value!r}", node=node, field=path
        )
    return value


def _float(spec: Field, value: object, node: str, n_inputs: int, path: str) -> float:
    number = _number(spec, value, node, path)
    try:
        return float(number)
    except OverflowError:  # an int past float range where the field has no bound
        raise DagError(f"must be a finite number, got {_show(number)}", node=node, field=path) from None


def _int(spec: Field, value: object, node: str, n_inputs: int, path: str) -> int:
    number = _number(spec, value, node, path)
    if number != int(number):
        raise DagError(f"must be an integer, got {value!r}", node=node, field=path)
    return int(number)


def _bool(spec: Field, value: object, node: str, n_inputs: int, path: str) -> bool:
    if not isinstance(value, bool):
        raise DagError(f"must be true or false, got {_show(value)}", node=node, field=path)
    return value


def _str(spec: Field, value: object, node: str, n_inputs: int, path: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise DagError(f"must be a string of at most {MAX_STRING} characters", node=node,
                       field=path)
    return value


def _choice(spec: Field, value: object, node: str, n_inputs: int, path: str) -> str:
    if value not in spec.choices:
        raise DagError(f"must be one of {', '.join(spec.choices)}, got {_show(value)}",
                       node=node, field=path)
    return str(value)


def _color(spec: Field, value: object, node: str, n_inputs: int, path: str) -> str:
    try:
        rgb = ImageColor.getrgb(_str(spec, value, node, n_inputs, path))
    except ValueError:
        raise DagError(f"is not a colour: {_show(value)}", node=node, field=path) from None
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def _digest(spec: Field, value: object, node: str, n_inputs: int, path: str) -> str:
    if not isinstance(value, str) or not DIGEST_RE.fullmatch(value):
        raise DagError("must be a 64-character lower-case SHA3-256 hex digest", node=node,
                       field=path)
    return value


def _point(spec: Field, value: object, node: str, n_inputs: int, path: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise DagError(f"must be a pair [x, y], got {_show(value)}", node=node, field=path)
    axis = Field("int", lo=spec.lo, hi=spec.hi)
    return [_int(axis, v, node, n_inputs, f"{path}[{i}]") for i, v in enumerate(value)]


def _object(spec: Field, value: object, node: str, n_inputs: int, path: str) -> dict[str, Any]:
    return fill(spec.schema, value, node=node, n_inputs=n_inputs, path=path)


def _mapping(spec: Field, value: object, node: str, n_inputs: int, path: str) -> dict[str, Any]:
    # Free-form mapping whose keys are checked by its owner (an effect's params).
    if not isinstance(value, dict):
        raise DagError(f"must be a mapping, got {_show(value)}", node=node, field=path)
    return dict(value)


def _list(spec: Field, value: object, node: str, n_inputs: int, path: str) -> list[Any]:
    # Lists are one entry per input: an empty or missing list means "defaults for every input".
    assert spec.item is not None
    items = [] if value is None else value
    if not isinstance(items, list) or len(items) not in (0, n_inputs):
        raise DagError(f"must be a list of {n_inputs} entries (one per input)", node=node,
                       field=path)
    items = items or [_missing(spec.item)] * n_inputs
    return [check(spec.item, v, node=node, n_inputs=n_inputs, path=f"{path}[{i}]")
            for i, v in enumerate(items)]


_CHECKERS = {
    "float": _float, "int": _int, "bool": _bool, "str": _str, "choice": _choice,
    "color": _color, "digest": _digest, "point": _point, "object": _object, "list": _list,
    "mapping": _mapping,
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
