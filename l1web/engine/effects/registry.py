"""The effect registry: built in code from this package's modules, nothing fetched or loaded."""

from __future__ import annotations

import dataclasses
import functools

from l1web.engine.effects import blur, brightness, contrast, dog, grayscale, identity, invert, sepia
from l1web.engine.effects.effect import Effect
from l1web.engine.effects.errors import EffectError


def per_frame(effect: Effect) -> Effect:
    """Declares that every output frame of `effect` depends only on the same input frame.

    Such effects are split into chunks on long videos (engine/chunks.py). An effect with state
    across frames (trails, motion blur, temporal denoise) is listed without this and is always
    rendered in one piece. Declared here, not in the effect's module, so the declaration does
    not change the effect's version (its module's source is hashed into it).
    """
    return dataclasses.replace(effect, per_frame=True)


#: Every effect this server can run, in listing order. All of today's are per-frame: each
#: output frame is a function of the same input frame only (blur is spatial, not temporal).
EFFECTS: tuple[Effect, ...] = (
    per_frame(identity.EFFECT),
    per_frame(dog.EFFECT),
    per_frame(invert.EFFECT),
    per_frame(grayscale.EFFECT),
    per_frame(blur.EFFECT),
    per_frame(sepia.EFFECT),
    per_frame(brightness.EFFECT),
    per_frame(contrast.EFFECT),
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
