"""The effect registry: lookup, identity hashes and parameter validation."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1web.engine.effects import EffectError, Param, get_effect, list_effects
from l1web.engine.effects.effect import Effect, sha3_json
from l1web.engine.effects.invert import invert_image

HEX64 = re.compile(r"[0-9a-f]{64}")
REQUIRED = {"identity", "dog", "invert", "grayscale", "blur", "sepia"}


def test_required_effects_are_registered() -> None:
    assert REQUIRED <= {e.name for e in list_effects()}


def test_effects_are_found_by_name_and_by_hash() -> None:
    for effect in list_effects():
        assert get_effect(effect.name) is effect
        assert get_effect(effect.hash) is effect


def test_unknown_effect_error_names_it() -> None:
    with pytest.raises(EffectError, match="no-such-effect"):
        get_effect("no-such-effect")


def test_hash_and_version_are_sha3_hex_and_stable() -> None:
    for effect in list_effects():
        assert HEX64.fullmatch(effect.hash) and HEX64.fullmatch(effect.version)
        rebuilt = dataclasses.replace(effect)
        assert (rebuilt.hash, rebuilt.version) == (effect.hash, effect.version)


def test_hash_is_sha3_of_name_version_and_schema() -> None:
    dog = get_effect("dog")
    assert dog.hash == sha3_json({"name": "dog", "version": dog.version, "params": dog.schema()})


def test_effect_hashes_are_distinct() -> None:
    hashes = [e.hash for e in list_effects()]
    assert len(set(hashes)) == len(hashes)


def test_new_implementation_version_changes_version_and_hash() -> None:
    dog = get_effect("dog")
    bumped = dataclasses.replace(dog, implementation_version="2")
    assert bumped.version != dog.version
    assert bumped.hash != dog.hash


def test_changed_param_schema_changes_hash() -> None:
    blur = get_effect("blur")
    wider = dataclasses.replace(
        blur, params={"sigma": dataclasses.replace(blur.params["sigma"], max=128.0)}
    )
    assert wider.hash != blur.hash


def test_to_json_lists_schema_with_defaults_and_ranges() -> None:
    listed = get_effect("dog").to_json()
    assert listed["name"] == "dog"
    assert listed["hash"] == get_effect("dog").hash
    assert listed["kinds"] == ["image", "video"]
    assert listed["video"] == "frames"
    assert set(listed["params"]) == {"sigma", "k", "tau", "epsilon", "phi"}
    assert listed["params"]["sigma"] == {
        "type": "float", "default": 1.3, "min": 0.3, "max": 10.0,
        "description": "scale of the finer blur, in pixels",
    }


def test_resolve_params_fills_defaults() -> None:
    dog = get_effect("dog")
    assert dog.resolve_params({}) == {name: p.default for name, p in dog.params.items()}


def test_resolve_params_makes_ints_floats_for_float_params() -> None:
    resolved = get_effect("blur").resolve_params({"sigma": 3})
    assert resolved == {"sigma": 3.0}
    assert isinstance(resolved["sigma"], float)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, True, "3", None, [3], 0.0, 65.0, 10**400]
)
def test_bad_param_values_are_refused_naming_the_param(value: object) -> None:
    with pytest.raises(EffectError, match="'sigma'"):
        get_effect("blur").resolve_params({"sigma": value})


def test_unknown_param_is_refused_naming_it() -> None:
    with pytest.raises(EffectError, match="'radius'"):
        get_effect("blur").resolve_params({"radius": 3})


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(EffectError, match="mapping"):
        get_effect("blur").resolve_params([("sigma", 3)])  # type: ignore[arg-type]


@given(st.floats(min_value=0.1, max_value=64.0))
def test_every_in_range_float_is_accepted_unchanged(sigma: float) -> None:
    assert get_effect("blur").resolve_params({"sigma": sigma}) == {"sigma": sigma}


def test_int_params_accept_integral_numbers_only() -> None:
    count = Param("count", "int", 2, 1, 10, "how many")
    assert count.validate(3.0) == 3
    assert isinstance(count.validate(3.0), int)
    with pytest.raises(EffectError, match="integer"):
        count.validate(2.5)


def test_param_with_invalid_default_is_a_programming_error() -> None:
    with pytest.raises(EffectError, match="'count'"):
        Param("count", "int", 20, 1, 10, "how many")


def test_effect_needs_exactly_one_video_implementation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Effect(name="broken", description="", implementation_version="1", image=invert_image)
