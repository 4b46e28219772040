"""Effects: a registry of named, versioned image and video effects (see docs/effects.md)."""

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.errors import EffectError
from l1web.engine.effects.params import Param
from l1web.engine.effects.registry import get_effect, list_effects

__all__ = ["Effect", "EffectError", "Param", "get_effect", "list_effects"]
