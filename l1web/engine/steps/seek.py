"""Where a chunk starts in its input: a seek that lands exactly on frame `start`, found cheaply.

Selecting a chunk's frames by counting from the first frame is exact but decodes every frame
before the chunk: chunk i of K pays i chunks of decoding, and K chunks pay K²/2 (measured in
bench/bench_chunks.py). Instead the input's packet timestamps are read (demuxing only, no
decoding: milliseconds for thousands of frames) and sorted into presentation order, so frame n
is the n-th timestamp. ffmpeg is asked to seek (`-ss` before `-i`, which decodes from the
keyframe before and drops frames before the seek point) to the midpoint between frames
`start − 1` and `start`: half a frame from either, so no rounding of the time can move the
boundary by a frame. The chunk then takes `end − start` frames by count. Where timestamps
cannot be read (no ffprobe, a stream without them), counting from the first frame is the
fallback: slower, equally exact.
"""

from __future__ import annotations

import json
from pathlib import Path

from l1web.engine import ffmpeg
from l1web.engine.chunks import trim_filter
from l1web.engine.ffmpeg import MEDIA_INPUT_FLAGS, FFmpegError

#: Seconds reading one input's packet timestamps may take.
TIMESTAMPS_TIMEOUT = 60.0


def chunk_input(src: Path, frames: tuple[int, int | None]) -> tuple[list[str], str]:
    """(`-ss` arguments to put before this input's `-i`, trim filter) selecting `frames` of it."""
    start, end = frames
    times = frame_times(src) if start > 0 else None
    if not times or len(times) <= start:
        return [], trim_filter(frames)
    at = (times[start - 1] + times[start]) / 2
    return ["-ss", f"{at:.6f}"], trim_filter((0, None if end is None else end - start))


def frame_times(src: Path) -> list[float] | None:
    """Presentation times (s, from the file's start) of the first video stream's frames, sorted."""
    exe = ffmpeg.ffprobe_exe()
    if exe is None:
        return None
    try:
        out = ffmpeg.run([exe, "-v", "error", *MEDIA_INPUT_FLAGS, "-select_streams", "v:0",
                          "-show_entries", "packet=pts_time:format=start_time", "-of", "json", str(src)],
                         timeout=TIMESTAMPS_TIMEOUT)
        data = json.loads(out or b"{}")
        origin = float(data.get("format", {}).get("start_time") or 0.0)
        times = sorted(float(p["pts_time"]) - origin for p in data.get("packets", []))
    except (FFmpegError, ValueError, KeyError, TypeError):
        return None
    # Packets an edit list drops come before the start and are never shown: not frames.
    return [t for t in times if t >= -1e-6]
