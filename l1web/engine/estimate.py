"""What each step of a plan is expected to make, from the analysis of its sources: media
length, frame rate and frame count (a step's 100 %), and the step's weight in its run's
progress (expected length × a per-node-type cost).

Estimates, not promises: a step's percent is capped below 100 until it really ends, so a
short estimate only makes a bar wait at 99.9 %.
"""

from __future__ import annotations

from typing import Any

from l1web.engine.plan import Plan, Step

#: Relative cost of one second of output per node type (one image counts as one second).
#: Rough figures from the engine benchmark: numpy effects are the slowest, stream copies cheap.
COST = {
    "SOURCE": 0.0, "SEGMENT": 0.5, "RESIZE": 1.0, "TRANSFORM": 1.0, "SEQUENCE": 1.0,
    "LAYER": 1.5, "BLEND": 1.5, "MUX": 0.3, "AUDIO_MIX": 0.3, "EFFECT": 2.0,
}
#: Seconds an image output counts as when weighing steps.
IMAGE_SECONDS = 1.0
#: Frame rate assumed for a video whose rate is unknown.
DEFAULT_FPS = 25.0


def expect(plan: Plan, analysis: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`{step_id: {"seconds", "fps", "frames", "weight"}}` for every step of `plan`."""
    out: dict[str, dict[str, Any]] = {}
    for step in plan["steps"]:  # inputs come first
        inputs = [out[i] for i in step["inputs"] if i in out]
        if step["type"] == "SOURCE":
            media = (analysis.get(step["cache_id"]) or {}).get("media") or {}
            seconds, fps = media.get("duration"), media.get("fps")
        else:
            seconds = _seconds(step, inputs)
            fps = next((i["fps"] for i in inputs if i.get("fps")), None)
        kind = step.get("kind")
        if kind != "video":
            fps = None
        elif not fps:
            fps = DEFAULT_FPS
        if step.get("frames") and fps:  # a chunk: exactly its frame range of the whole
            start, end = step["frames"]  # end None: to the end of the input
            seconds = (end - start) / fps if end is not None else max((seconds or 0) - start / fps, 0)
        seconds = round(seconds, 3) if seconds and kind != "image" else None
        frames = round(seconds * fps) if seconds and fps else (1 if kind == "image" else None)
        weight = COST.get(step["type"], 1.0) * (seconds or IMAGE_SECONDS)
        out[step["step_id"]] = {"seconds": seconds, "fps": fps, "frames": frames,
                                "weight": round(weight, 3)}
    return out


def _seconds(step: Step, inputs: list[dict[str, Any]]) -> float | None:
    lengths: list[float] = [i["seconds"] for i in inputs if i.get("seconds")]
    if not lengths:
        return None
    cfg = step.get("config") or {}
    kind = step["type"]
    if kind == "SEGMENT":
        left = max(lengths[0] - float(cfg.get("offset") or 0), 0.0)
        wanted = cfg.get("duration")
        return min(left, float(wanted)) if wanted is not None else left
    if kind == "TRANSFORM":
        speed = float(((cfg.get("effects") or {}).get("speed")) or 1.0)
        return lengths[0] / speed if speed > 0 else lengths[0]
    if kind == "SEQUENCE":
        transition = cfg.get("transition") or {}
        overlap = float(transition.get("duration") or 0) if transition.get("type") == "crossfade" else 0.0
        return max(sum(lengths) - overlap * (len(lengths) - 1), *lengths)
    if kind in ("LAYER", "BLEND"):
        return lengths[0]
    if kind == "MUX":
        return min(lengths) if cfg.get("shortest") else lengths[0]
    if kind == "AUDIO_MIX":
        return max(lengths)
    return lengths[0]
