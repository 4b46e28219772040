"""The join of a chunked step: the chunks' video laid end to end unchanged, the sound added once.

The chunks (engine/chunks.py) are H.264 files made with the same encoder settings, each starting
at time 0; ffmpeg's concat demuxer (documented for exactly this: same codec, same parameters)
offsets each by the length of those before it and `-c:v copy` keeps every frame as encoded, so
the join costs a copy, not a render. The sound is taken from the step's first input in one
piece, with the same arguments the unchunked render would use, so it is the same stream with no
seams. Every chunk must hold exactly its range's frames, checked before joining — except where
the picture ends early (a file whose sound outlasts its picture is planned by its longer
duration): then that chunk is short, every later one is empty, and the empty ones are left out.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from l1web.engine.effects.video import audio_args, probe_video
from l1web.engine.encoding import AUDIO_ARGS, CONTAINER_ARGS
from l1web.engine.errors import StepError
from l1web.engine.ffmpeg import INPUT_FLAGS, MEDIA_INPUT_FLAGS, SAFE_DEMUXERS, probe_own
from l1web.engine.steps.task import RenderTask
from l1web.engine.steps.video import transform_audio

#: Chunks' frame counts read at once.
PROBES_AT_ONCE = 8
#: Name of the concat list written beside the output (only names of links in the same folder).
LIST_NAME = "chunks.txt"

_Part = TypeVar("_Part")


def join(job: RenderTask, node_type: str, ranges: list[list[int | None]]) -> None:
    """`job.inputs` = the chunks of frames `ranges`, in order, then the step's own inputs."""
    count = len(ranges)
    source = job.inputs[count]
    # Read at once: in process (PyAV) 5-18 ms each; without PyAV each is an ffprobe, and six of
    # those on one busy CPU took 1.5-2.1 s together against 3.3-4.3 s one after another.
    with ThreadPoolExecutor(min(PROBES_AT_ONCE, count)) as pool:
        counts = list(pool.map(frame_count, job.inputs[:count]))
    parts = present(job.inputs[:count], ranges, counts)
    folder = job.out.parent
    lines = []
    for index, part in enumerate(parts):
        # Links beside the list: the concat demuxer's safe mode takes only plain relative names.
        link = folder / f"chunk-{index:04d}.mp4"
        os.symlink(part, link)
        lines.append(f"file '{link.name}'\n")
    listing = folder / LIST_NAME
    listing.write_text("".join(lines))
    job.run(
        *INPUT_FLAGS, "-format_whitelist", f"concat,{SAFE_DEMUXERS}", "-f", "concat", "-i", str(listing),
        *MEDIA_INPUT_FLAGS, "-i", str(source),
        "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", *sound_args(job, node_type, source),
        *CONTAINER_ARGS, str(job.out),
    )


def present(parts: list[_Part], ranges: list[list[int | None]], counts: list[int]) -> list[_Part]:
    """The chunks holding frames, after checking that no frame is missing or doubled."""
    ended = False
    for index, ((start, end), frames) in enumerate(zip(ranges, counts, strict=True)):
        assert start is not None  # a range starts at a frame; only its end may be open
        expected = None if end is None else end - start
        if ended and frames:
            raise StepError(f"chunk {index} has {frames} frames after the picture ended")
        if (expected is not None and frames > expected) or (index == 0 and frames < 1):
            want = expected if expected is not None else "at least 1"
            raise StepError(f"chunk {index} has {frames} frames, {want} expected")
        ended = ended or expected is None or frames < expected
    return [part for part, frames in zip(parts, counts, strict=True) if frames]


def sound_args(job: RenderTask, node_type: str, source: Path) -> list[str]:
    """The sound arguments the unchunked render of this step type would use."""
    if node_type == "EFFECT":
        return list(audio_args(probe_video(source, timeout=job.timeout)))
    if node_type == "TRANSFORM":
        return [*transform_audio(job.config["effects"]), *AUDIO_ARGS]
    return list(AUDIO_ARGS)


def frame_count(path: Path) -> int:
    """Frames in a chunk's video stream, from its MP4 index (no decoding), read in process: the
    chunk is this engine's own output (`ffmpeg.probe_own`)."""
    streams = probe_own(path).get("streams", [])
    video: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "video"), {})
    try:
        return int(video.get("nb_frames") or 0)
    except ValueError:
        return 0
