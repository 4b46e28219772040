"""Which media kind each node makes from the kinds it is given — checked before any rendering.

Kinds are "image", "video" and "audio". A node handed a kind it cannot handle is refused at
plan time with a DagError naming the node, the field and the kinds involved.
"""

from __future__ import annotations

from l1web.engine.dag import Node
from l1web.engine.errors import DagError
from l1web.engine.node_types import TRANSFORM_EFFECTS


def output_kind(node: Node, kinds: list[str]) -> str:
    """The kind `node` outputs given its inputs' kinds, or DagError."""
    return _RULES[node.type](node, kinds)


def _refuse(node: Node, message: str, field: str = "inputs") -> DagError:
    return DagError(message, node=node.id, field=field)


def _only(node: Node, kinds: list[str], allowed: tuple[str, ...]) -> str:
    for index, kind in enumerate(kinds):
        if kind not in allowed:
            raise _refuse(node, f"{node.type} cannot take {kind} input (input {index}); "
                                f"it takes {' or '.join(allowed)}")
    return kinds[0]


def _segment(node: Node, kinds: list[str]) -> str:
    return _only(node, kinds, ("video", "audio"))


def _resize(node: Node, kinds: list[str]) -> str:
    return _only(node, kinds, ("video", "image"))


def _transform(node: Node, kinds: list[str]) -> str:
    kind, fx = kinds[0], node.config["effects"]
    if kind == "image" and fx["speed"] != 1:
        raise _refuse(node, "speed needs video or audio, the input is an image",
                      "effects.speed")
    if kind == "audio":
        for key, spec in TRANSFORM_EFFECTS.items():
            if key != "speed" and fx[key] != spec.default:
                raise _refuse(node, "only speed applies to audio input", f"effects.{key}")
    return kind


def _sequence(node: Node, kinds: list[str]) -> str:
    if kinds[0] == "audio":
        return _only(node, kinds, ("audio",))
    return _only(node, kinds, ("video",))


def _composite(node: Node, kinds: list[str]) -> str:
    _only(node, kinds, ("video", "image"))
    if kinds[0] == "image" and "video" in kinds:
        raise _refuse(node, f"{node.type} over an image base cannot take video layers; "
                            "put the video first")
    return kinds[0]


def _mux(node: Node, kinds: list[str]) -> str:
    video, audio = node.config["video_stream"], node.config["audio_stream"]
    if kinds[video] != "video":
        raise _refuse(node, f"input {video} is {kinds[video]}, MUX needs video", "video_stream")
    if kinds[audio] not in ("video", "audio"):
        raise _refuse(node, f"input {audio} is {kinds[audio]}, MUX needs sound",
                      "audio_stream")
    return "video"


def _audio_mix(node: Node, kinds: list[str]) -> str:
    _only(node, kinds, ("audio", "video"))
    return "audio"


def _effect(node: Node, kinds: list[str]) -> str:
    from l1web.engine.effects import EffectError, get_effect

    if kinds[0] not in ("image", "video"):
        raise _refuse(node, f"effects take an image or a video, the input is {kinds[0]}")
    try:
        get_effect(node.config["effect"]).check_kind(kinds[0])
    except EffectError as exc:
        raise _refuse(node, str(exc), "effect") from None
    return kinds[0]


_RULES = {
    "SEGMENT": _segment, "RESIZE": _resize, "TRANSFORM": _transform, "SEQUENCE": _sequence,
    "LAYER": _composite, "BLEND": _composite, "MUX": _mux, "AUDIO_MIX": _audio_mix,
    "EFFECT": _effect,
}
