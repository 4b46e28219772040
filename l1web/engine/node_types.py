"""Every node type the engine knows: its config schema, its input count and its version.

The `version` of a type is part of every cache id made by it: bump it whenever the executor's
output for the same config and inputs changes, so no stale render is ever served.
"""

from __future__ import annotations

from dataclasses import dataclass

from l1web.engine.schema import Field, Schema

#: Most inputs one node may have (SEQUENCE, LAYER, MUX, AUDIO_MIX).
MAX_INPUTS = 64
#: Largest width or height, in pixels, a node may ask for.
MAX_SIDE = 8192
#: Longest time, in seconds, a config may name (offsets, durations).
MAX_SECONDS = 24 * 3600.0

SEGMENT = {
    "offset": Field("float", 0.0, lo=0.0, hi=MAX_SECONDS),  # seconds from the start
    "duration": Field("float", None, lo=0.001, hi=MAX_SECONDS, nullable=True),  # None: to end
    "precise": Field("bool", True),  # frame-accurate re-encode; false = keyframe stream copy
}
RESIZE = {
    "width": Field("int", lo=2, hi=MAX_SIDE),
    "height": Field("int", lo=2, hi=MAX_SIDE),
    "mode": Field("choice", "fit", choices=("fit", "fill", "stretch", "pad")),
    "background": Field("color", "black"),
}
TRANSFORM_EFFECTS = {
    "saturation": Field("float", 1.0, lo=0.0, hi=3.0),  # eq multiplier, 1 = unchanged
    "contrast": Field("float", 1.0, lo=0.0, hi=3.0),  # eq multiplier, 1 = unchanged
    "brightness": Field("float", 0.0, lo=-1.0, hi=1.0),  # eq offset, 0 = unchanged
    "gamma": Field("float", 1.0, lo=0.1, hi=10.0),  # eq gamma, 1 = unchanged
    "hue": Field("float", 0.0, lo=-360.0, hi=360.0),  # degrees of rotation
    "blur": Field("int", 0, lo=0, hi=50),  # box blur radius in pixels
    "sharpen": Field("float", 0.0, lo=0.0, hi=5.0),  # unsharp-mask amount
    "speed": Field("float", 1.0, lo=0.25, hi=4.0),  # playback rate multiplier
}
TRANSITION = {
    "type": Field("choice", "cut", choices=("cut", "crossfade", "fade")),
    "duration": Field("float", 0.5, lo=0.04, hi=60.0),  # seconds, ignored for cut
}
SEQUENCE = {
    "transition": Field("object", schema=TRANSITION),
    "target_size": Field("choice", "first", choices=("first", "last", "largest", "explicit")),
    "width": Field("int", None, lo=2, hi=MAX_SIDE, nullable=True),  # explicit only
    "height": Field("int", None, lo=2, hi=MAX_SIDE, nullable=True),  # explicit only
    "background": Field("color", "black"),
}
LAYER_ENTRY = {
    "position": Field("point", [0, 0], lo=-MAX_SIDE, hi=MAX_SIDE),  # pixels from top-left
    "scale": Field("float", 1.0, lo=0.01, hi=10.0),
    "opacity": Field("float", 1.0, lo=0.0, hi=1.0),
}
LAYER = {"inputs": Field("list", None, item=Field("object", schema=LAYER_ENTRY))}
BLEND_MODES = (
    "normal", "multiply", "screen", "overlay", "add", "subtract", "average", "difference",
    "lighten", "darken",
)
BLEND = {
    "mode": Field("choice", "overlay", choices=BLEND_MODES),
    "opacity": Field("float", 0.5, lo=0.0, hi=1.0),  # 0 = base only, 1 = full blend
}
MUX = {
    "video_stream": Field("int", 0, lo=0, hi=MAX_INPUTS - 1),  # index into inputs
    "audio_stream": Field("int", 1, lo=0, hi=MAX_INPUTS - 1),  # index into inputs
    "shortest": Field("bool", True),
}
AUDIO_MIX = {
    "gains": Field("list", None, item=Field("float", 1.0, lo=0.0, hi=10.0)),
    "normalize": Field("bool", True),
}
SOURCE = {
    "hash": Field("digest", None, nullable=True),  # filled in by the recipe layer
    "input": Field("bool", False),  # a variable input named at run time
    "asset": Field("str", None, nullable=True),  # a fixed input from the registry
    "name": Field("str", None, nullable=True),
    "description": Field("str", None, nullable=True),
}
EFFECT = {
    "effect": Field("str"),  # effect name or hash
    "params": Field("mapping", {}),  # checked by the effect's own schema
}


@dataclass(frozen=True)
class NodeType:
    """A node type: config schema, allowed input counts and executor version."""

    name: str
    schema: Schema
    min_inputs: int
    max_inputs: int
    version: str


NODE_TYPES: dict[str, NodeType] = {
    t.name: t
    for t in (
        NodeType("SOURCE", SOURCE, 0, 0, "1"),
        NodeType("SEGMENT", SEGMENT, 1, 1, "1"),
        NodeType("RESIZE", RESIZE, 1, 1, "1"),
        NodeType("TRANSFORM", {"effects": Field("object", schema=TRANSFORM_EFFECTS)}, 1, 1, "1"),
        NodeType("SEQUENCE", SEQUENCE, 1, MAX_INPUTS, "1"),
        NodeType("LAYER", LAYER, 1, MAX_INPUTS, "1"),
        NodeType("BLEND", BLEND, 2, 2, "1"),
        NodeType("MUX", MUX, 2, MAX_INPUTS, "1"),
        NodeType("AUDIO_MIX", AUDIO_MIX, 2, MAX_INPUTS, "1"),
        NodeType("EFFECT", EFFECT, 1, 1, "1"),
    )
}
