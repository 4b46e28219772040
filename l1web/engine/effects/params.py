"""Effect parameters: a typed schema with defaults and closed ranges, and strict validation.

Validation is strict because resolved parameters go into cache ids and filter graphs: a value
that JSON, YAML or a form could spell several ways (`2`, `2.0`, `"2"`, `true`) must either map to
one canonical value or be refused, and nothing that is not a finite number may reach ffmpeg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from l1web.engine.effects.errors import EffectError

ParamType = Literal["float", "int"]
#: Resolved params: every schema name with its canonical value (what an effect function gets).
ParamValues = dict[str, float | int]


@dataclass(frozen=True)
class Param:
    """One numeric parameter: its type, default and inclusive range."""

    name: str
    type: ParamType
    default: float | int
    min: float | int
    max: float | int
    description: str

    def __post_init__(self) -> None:
        # A schema whose own default is invalid would make every recipe fail; catch it at build.
        self.validate(self.default)

    def validate(self, value: object) -> float | int:
        """The canonical value (floats for float params, ints for int params) or EffectError."""
        number = _number(self.name, value)
        # Range first: Python compares huge ints exactly, where float() of one would overflow.
        if not self.min <= number <= self.max:
            raise EffectError(
                f"param {self.name!r} must be between {self.min} and {self.max}, got {value!r}"
            )
        if self.type == "float":
            return float(number)
        if number != int(number):
            raise EffectError(f"param {self.name!r} must be an integer, got {value!r}")
        return int(number)

    def to_json(self) -> dict[str, object]:
        """The schema entry listed by the API and hashed into the effect's version."""
        return {
            "type": self.type,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "description": self.description,
        }


def _number(name: str, value: object) -> float | int:
    # bool is an int subclass: `true` must not silently mean 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EffectError(f"param {name!r} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EffectError(f"param {name!r} must be finite, got {value!r}")
    return value


def resolve(schema: dict[str, Param], params: object, effect: str) -> ParamValues:
    """Every schema param with its validated value or default; unknown keys are refused."""
    if not isinstance(params, dict):
        raise EffectError(f"effect {effect!r}: params must be a mapping, got {params!r}")
    unknown = sorted(str(key) for key in params if key not in schema)
    if unknown:
        raise EffectError(f"effect {effect!r}: unknown param {', '.join(map(repr, unknown))}")
    return {
        name: param.validate(params[name]) if name in params else param.default
        for name, param in schema.items()
    }
