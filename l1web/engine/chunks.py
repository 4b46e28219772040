"""Chunk planning: a frame-wise step on a long video becomes K chunk steps and one join step.

Render farms split long renders into frame ranges (Flamenco's `chunk_size`, Deadline's
`1-400:10`); so does L1. A step is *frame-wise* when every output frame depends only on the
same input frame(s):

- EFFECT whose registry entry says `per_frame` (effects with state across frames never do),
- RESIZE, and TRANSFORM at speed 1 (a speed change retimes the sound),
- BLEND and LAYER when their video inputs are aligned (same frame rate and length; still
  images are the same picture on every frame).

Such a step on video longer than `Chunking.min_seconds` is planned as K chunk steps over exact
frame ranges `[start, end)` of about `Chunking.seconds` each (the last one open-ended, so no
frame can be lost to a rounded duration) plus a join step that concatenates the chunks
without re-encoding and adds the sound once. Everything here is a pure function of the DAG,
the inputs' media facts and the setting: the same inputs and setting always give the same
chunks and ids, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds of video per chunk, about (CHUNK_SECONDS; 0 turns chunking off).
CHUNK_SECONDS = 10.0
#: Videos at most this long (seconds) are rendered in one piece (CHUNK_MIN_SECONDS).
CHUNK_MIN_SECONDS = 30.0
#: Most chunks one step is split into (the join's concat list stays short).
MAX_CHUNKS = 256
#: Node types that may be chunked, under the conditions of `frame_wise`.
CHUNKABLE = frozenset({"EFFECT", "RESIZE", "TRANSFORM", "BLEND", "LAYER"})


@dataclass(frozen=True)
class Chunking:
    """The chunk setting: about `seconds` per chunk, for videos longer than `min_seconds`."""

    seconds: float = CHUNK_SECONDS
    min_seconds: float = CHUNK_MIN_SECONDS

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def cache_part(self) -> dict[str, Any]:
        """What of the setting enters a chunked step's cache id: what the boundaries depend on."""
        return {"seconds": self.seconds}


#: Chunking switched off (plans are then exactly as without this module).
OFF = Chunking(seconds=0.0)


@dataclass(frozen=True)
class Facts:
    """What chunk boundaries depend on: a video's frame rate and duration (seconds)."""

    fps: float
    duration: float


def source_facts(media: dict[str, Any]) -> Facts | None:
    """A SOURCE's facts from its analysis `media`, when it is a video with a rate and a length
    whose frames lie on its rate's grid (`on_grid`: analysis says `"cfr": true`)."""
    if media.get("kind") != "video" or media.get("cfr") is not True:
        return None
    fps, duration = media.get("fps"), media.get("duration")
    if not fps or not duration or fps <= 0 or duration <= 0:
        return None
    return Facts(float(fps), float(duration))


#: How far (in frames) a frame's time may lie from its place on the grid of a constant rate.
GRID_TOLERANCE = 0.25


def on_grid(times: Sequence[float], rates: list[float]) -> bool:
    """Whether frame i is shown at i / rate (within `GRID_TOLERANCE` of a frame) for every rate.

    Chunk boundaries count frames, and the renderers make constant-rate video: the numpy frame
    path at the stream's average rate (ffmpeg's `-r`), ffmpeg's own filters at its guessed
    rate. Frame i of the output is frame i of the input only when the input's frames already
    lie on that grid: then whole and chunked renders keep every frame once, in place. A
    variable-rate video (or one with gaps, or starting late) is retimed by that conversion —
    frames doubled or dropped by where they fall — and a chunk, converted on its own, cannot
    know what the whole conversion did before its first frame. Such videos are planned whole.
    """
    if not times or not rates or any(rate <= 0 for rate in rates):
        return False
    for rate in rates:
        slack = GRID_TOLERANCE / rate
        if any(abs(t - i / rate) > slack for i, t in enumerate(times)):
            return False
    return True


def frame_wise(node_type: str, config: dict[str, Any], input_kinds: list[str],
               input_facts: list[Facts | None]) -> Facts | None:
    """The facts of the video this step renders frame by frame, or None when it is not frame-wise."""
    if node_type not in CHUNKABLE or not input_kinds or input_kinds[0] != "video":
        return None
    base = input_facts[0]
    if base is None:
        return None
    if node_type == "EFFECT":
        from l1web.engine.effects import get_effect

        return base if get_effect(config["effect"]).per_frame else None
    if node_type == "TRANSFORM":
        return base if config["effects"]["speed"] == 1 else None
    if node_type in ("BLEND", "LAYER"):
        for kind, facts in zip(input_kinds, input_facts, strict=True):
            if kind == "image":
                continue
            if kind != "video" or facts != base:
                return None  # not aligned: frame i of one input is not frame i of another
        return base
    return base  # RESIZE


def boundaries(facts: Facts, chunking: Chunking) -> list[tuple[int, int | None]]:
    """Frame ranges `[start, end)` covering the video, the last open-ended; one range = no chunks.

    K = round(duration / seconds) (at least 2 once chunking applies), boundaries spread evenly
    over the estimated frame count, so chunks differ by at most one frame.
    """
    if not chunking.enabled or facts.duration <= chunking.min_seconds:
        return [(0, None)]
    frames = round(facts.duration * facts.fps)
    count = min(max(2, round(facts.duration / chunking.seconds)), MAX_CHUNKS, frames)
    if count < 2:
        return [(0, None)]
    cuts = [index * frames // count for index in range(count)]
    return [(start, end) for start, end in zip(cuts, [*cuts[1:], None], strict=True)]


def trim_filter(frames: tuple[int, int | None]) -> str:
    """The ffmpeg filters keeping frames `[start, end)` by index, timestamps restarting at 0.

    `trim` counts decoded frames, so a chunk is exactly its frames, not whatever rounded
    timestamps would pick; `setpts` restarts its clock so the join lays chunks end to end.
    """
    start, end = frames
    bounds = f"start_frame={int(start)}" + (f":end_frame={int(end)}" if end is not None else "")
    return f"trim={bounds},setpts=PTS-STARTPTS"


def chunk_step_id(node_id: str, index: int) -> str:
    """Id of chunk `index` of a node's step (`~` cannot appear in node ids)."""
    return f"{node_id}~c{index}"
