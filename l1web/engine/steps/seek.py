"""Where a chunk starts in its input: a seek that lands exactly on frame `start`, found cheaply.

Selecting a chunk's frames by counting from the first frame is exact but decodes every frame
before the chunk: chunk i of K pays i chunks of decoding, and K chunks pay K²/2 (measured in
bench/bench_chunks.py). Instead the input's packet timestamps are read (demuxing only, no
decoding: milliseconds for thousands of frames) and sorted into presentation order, so frame n
is the n-th timestamp. Then:

- ffmpeg seeks (`-ss` before `-i`) to just after frame `start`'s time, so its demuxer starts
  decoding at the keyframe at or before frame `start` — frame `start` itself when it is a
  keyframe (a seek to a time before it would go back a whole GOP: measured 1.2 s of 720p
  decoding per chunk on the benchmark clip, whose keyframes fall on the chunk starts);
- `-noaccurate_seek` keeps every decoded frame, its timestamp shifted by the seek time, and a
  `select` keeps those from midway between frames `start − 1` and `start` on: half a frame
  from either, so no rounding of a time (ffmpeg's microseconds, the stream's time base) can
  move the boundary by a frame;
- the chunk then takes `end − start` frames by count.

Only demuxers that seek through an index to the keyframe at or before the time asked are
trusted with this (`INDEXED`: MP4/MOV and Matroska/WebM, checked frame by frame in
tests/engine/test_chunks_render.py). MPEG-TS seeks by a byte search that may land on the
keyframe *after* the time (frames would be lost), AVI packets carry no presentation times;
those, and any input whose timestamps cannot be read (no ffprobe), are counted from the first
frame: slower, equally exact.
"""

from __future__ import annotations

import json
import math
import os
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from l1web.engine import ffmpeg
from l1web.engine.chunks import trim_filter
from l1web.engine.ffmpeg import MEDIA_INPUT_FLAGS, FFmpegError

#: Seconds reading one input's packet timestamps may take.
TIMESTAMPS_TIMEOUT = 60.0
#: ffmpeg demuxers (names in ffprobe's `format_name`) whose seek lands at or before the time asked.
INDEXED = frozenset({"mov", "matroska"})
#: Seconds past frame `start`'s time the seek aims at (ffmpeg's `-ss` has microseconds).
PAST = 1e-6


@dataclass(frozen=True)
class FrameIndex:
    """An input's first video stream (as ffprobe describes it) and its frames' times."""

    stream: dict[str, Any]
    #: Presentation times (s, from the file's start) of the stream's frames, sorted (8 bytes each).
    times: array[float]
    #: Whether ffmpeg's seek in this container may be trusted (`INDEXED`).
    seekable: bool


def chunk_input(src: Path, frames: tuple[int, int | None]) -> tuple[list[str], str]:
    """(arguments to put before this input's `-i`, filters) selecting `frames` of it."""
    start, end = frames
    index = frame_index(src) if start > 0 else None
    if index is None or not index.seekable or len(index.times) <= start:
        return [], trim_filter(frames)
    before, at = index.times[start - 1], index.times[start]
    seek = math.ceil(at * 1e6) / 1e6 + PAST
    keep = (before + at) / 2 - seek  # < 0: frames are timed from the seek point
    count = None if end is None else end - start
    return (["-noaccurate_seek", "-ss", f"{seek:.6f}"],
            f"select=gte(t\\,{keep:.6f}),{trim_filter((0, count))}")


def frame_times(src: Path) -> array[float] | None:
    """Presentation times (s, from the file's start) of the first video stream's frames, sorted."""
    index = frame_index(src)
    return index.times if index is not None else None


def frame_index(src: Path) -> FrameIndex | None:
    """The input's `FrameIndex` from one ffprobe run, or None where its timestamps cannot be read.

    Kept per file (path, size, modification time, inode) for the last few files in this
    process, so that the renderer's probe and its seek share one run of ffprobe.
    """
    try:
        stat = os.stat(src)
    except OSError:
        return None
    return _frame_index(str(src), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@lru_cache(maxsize=4)  # a chunk reads one or two videos; a 2-hour one's times are 1.4 MB
def _frame_index(src: str, size: int, mtime: int, inode: int) -> FrameIndex | None:
    exe = ffmpeg.ffprobe_exe()
    if exe is None:  # a pip-only install: PyAV prints the same JSON (l1web.engine.avprobe)
        args = [sys.executable, str(ffmpeg.AVPROBE), "--packets", "--protocols", ffmpeg.PROTOCOLS,
                "--formats", ffmpeg.SAFE_DEMUXERS, src]
        name: str | None = ffmpeg.PYAV_PROBE
    else:
        args = [exe, "-v", "error", *MEDIA_INPUT_FLAGS, "-select_streams", "v:0", "-show_streams",
                "-show_entries", "packet=pts_time:format=start_time,format_name", "-of", "json", src]
        name = None
    try:
        out = ffmpeg.run(args, timeout=TIMESTAMPS_TIMEOUT, name=name)
        data = json.loads(out or b"{}")
        fmt = data.get("format", {})
        origin = float(fmt.get("start_time") or 0.0)
        times = sorted(float(p["pts_time"]) - origin for p in data.get("packets", []))
        stream = (data.get("streams") or [None])[0]
    except (FFmpegError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(stream, dict):
        return None
    seekable = bool(INDEXED & set(str(fmt.get("format_name", "")).split(",")))
    # Packets an edit list drops come before the start and are never shown: not frames.
    return FrameIndex(stream, array("d", (t for t in times if t >= -1e-6)), seekable)
