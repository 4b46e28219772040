"""An effect: a named, versioned parameter schema with an image and a video implementation.

Identity is content-derived so that a cache id built from it can never serve stale output:
- `version` = SHA3-256 of canonical JSON of the declared implementation version, the param
  schema, the SHA3-256 of the implementing module's source file and the output encoder settings.
  Any edit to that module (even a comment) yields a new version: a cache miss is cheap, a stale
  hit is wrong.
- `hash` (the effect id) = SHA3-256 of canonical JSON of name, version and param schema.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from l1web.engine.effects import encoding
from l1web.engine.effects.errors import EffectError
from l1web.engine.effects.params import Param, ParamValues, resolve

#: Media kinds an effect can declare.
KINDS = frozenset({"image", "video"})

ImageFn = Callable[[np.ndarray, ParamValues], np.ndarray]
FilterFn = Callable[[ParamValues], str]
FrameFormat = Literal["rgb24", "gray"]


@dataclass(frozen=True)
class Effect:
    """A registered effect. `image` maps an H×W×3 uint8 RGB array to one of the same shape.

    Video is either an ffmpeg filter chain (`video_filter`, given resolved params) or, when no
    filter exists, `frame` applied to each decoded frame in `frame_format` (H×W×3 rgb24 or H×W
    gray uint8) as frames stream through numpy.
    """

    name: str
    description: str
    implementation_version: str
    image: ImageFn
    params: dict[str, Param] = field(default_factory=dict)
    kinds: frozenset[str] = KINDS
    video_filter: FilterFn | None = None
    frame: ImageFn | None = None
    frame_format: FrameFormat = "rgb24"
    #: True when each output frame depends only on the same input frame, so a long video may
    #: be split into chunks rendered apart (engine/chunks.py). The registry sets it; an effect
    #: with state across frames (trails, motion blur, temporal denoise) must leave it False.
    per_frame: bool = False

    def __post_init__(self) -> None:
        if not self.kinds <= KINDS:
            raise ValueError(f"effect {self.name!r}: unknown kinds {set(self.kinds) - KINDS}")
        if "video" in self.kinds and (self.video_filter is None) == (self.frame is None):
            raise ValueError(f"effect {self.name!r}: video needs exactly one of filter or frame")

    @cached_property
    def version(self) -> str:
        source = Path(sys.modules[self.image.__module__].__file__ or "").read_bytes()
        return sha3_json(
            {
                "implementation": self.implementation_version,
                "params": self.schema(),
                "source": hashlib.sha3_256(source).hexdigest(),
                "encoding": [
                    *encoding.VIDEO_ENCODE_ARGS,
                    *encoding.AUDIO_ENCODE_ARGS,
                    encoding.EVEN_SIZE_FILTER,
                ],
            }
        )

    @cached_property
    def hash(self) -> str:
        return sha3_json({"name": self.name, "version": self.version, "params": self.schema()})

    def schema(self) -> dict[str, dict[str, object]]:
        return {name: param.to_json() for name, param in self.params.items()}

    def resolve_params(self, params: object) -> ParamValues:
        """Defaults filled in, values validated and canonical; EffectError names a bad param."""
        return resolve(self.params, params, self.name)

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise EffectError(f"effect {self.name!r} does not support {kind!r} media")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hash": self.hash,
            "version": self.version,
            "description": self.description,
            "kinds": sorted(self.kinds),
            "video": "frames" if self.frame is not None else "filter",
            "per_frame": self.per_frame,
            "params": self.schema(),
        }


def sha3_json(value: object) -> str:
    """SHA3-256 hex of canonical JSON: sorted keys, no whitespace, UTF-8."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha3_256(text.encode("utf-8")).hexdigest()
