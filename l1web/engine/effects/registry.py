"""The effect registry: built in code from this package's modules, nothing fetched or loaded."""

from __future__ import annotations

import functools

from l1web.engine.effects import blur, brightness, contrast, dog, grayscale, identity, invert, sepia
from l1web.engine.effects.effect import Effect
from l1web.engine.effects.errors import EffectError

#: Every effect this server can run, in listing order.
EFFECTS: tuple[Effect, ...] = (
    identity.EFFECT,
    dog.EFFECT,
    invert.EFFECT,
    grayscale.EFFECT,
    blur.EFFECT,
    sepia.EFFECT,
    brightness.EFFECT,
    contrast.EFFECT,
)


@functools.cache
def _index() -> dict[str, Effect]:
    # Hashing reads each module's source once; names and 64-hex hashes cannot collide.
    return {key: e for e in EFFECTS for key in (e.name, e.hash)}


def get_effect(name_or_hash: str) -> Effect:
    """The effect with this name or effect hash; EffectError if there is none."""
    try:
        return _index()[name_or_hash]
    except (KeyError, TypeError):
        raise EffectError(f"unknown effect {name_or_hash!r}") from None


def list_effects() -> list[Effect]:
    return list(EFFECTS)
