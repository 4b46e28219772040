"""Video through ffmpeg: a filter chain in one process, or frames streamed through numpy.

The numpy path (frames.py) runs a decoder writing rawvideo to stdout and an encoder reading it
from stdin with the source's audio mapped in; this module builds their command lines.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.encoding import (
    AUDIO_COPY_ARGS,
    AUDIO_ENCODE_ARGS,
    EVEN_SIZE_FILTER,
    VIDEO_ENCODE_ARGS,
)
from l1web.engine.effects.errors import EffectError
from l1web.engine.effects.frames import apply_frames
from l1web.engine.effects.params import ParamValues
from l1web.engine.ffmpeg import BASE_FLAGS, INPUT_FLAGS, ffmpeg, ffmpeg_exe, probe

#: Bytes per pixel of each raw frame format on the pipe.
FRAME_CHANNELS: dict[str, int] = {"rgb24": 3, "gray": 1}
#: Frame rate used when the source declares none (frames per second).
FALLBACK_FPS = "25/1"
_RATIONAL = re.compile(r"[1-9][0-9]{0,8}/[1-9][0-9]{0,8}")


@dataclass(frozen=True)
class VideoInfo:
    """What the two paths need to know about a source: display size, rate and audio."""

    width: int
    height: int
    fps: str
    audio_codec: str | None


def apply_video(effect: Effect, params: ParamValues, src: Path, dst: Path, *, timeout: float,
                frames: tuple[int, int | None] | None = None) -> None:
    """Run `effect` with resolved `params` on the video `src`, writing an H.264 MP4 `dst`.

    With `frames` (a chunk, engine/chunks.py) only those frames are rendered, without sound.
    """
    deadline = time.monotonic() + timeout
    info = chunk_video(src) if frames is not None else None
    if info is None:
        info = probe_video(src, timeout=timeout)
    if frames is not None:
        info = replace(info, audio_codec=None)  # a chunk is silent: the join adds the sound once
    remaining = max(deadline - time.monotonic(), 0.001)
    if effect.video_filter is not None:
        apply_filter(effect.video_filter(params), src, dst, info, timeout=remaining, frames=frames)
    else:
        assert effect.frame is not None
        frame_fn = effect.frame
        width, height = info.width - info.width % 2, info.height - info.height % 2
        channels = FRAME_CHANNELS[effect.frame_format]
        apply_frames(
            lambda frame: frame_fn(frame, params),
            (height, width, channels) if channels > 1 else (height, width),
            decoder_args(src, effect.frame_format, info.fps, frames),
            encoder_args(src, dst, effect.frame_format, f"{width}x{height}", info),
            timeout=remaining,
        )


def probe_video(src: Path, *, timeout: float) -> VideoInfo:
    meta = probe(src, timeout=timeout)
    streams = meta.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return _video_info(src, video, audio)


def chunk_video(src: Path) -> VideoInfo | None:
    """A chunk's view of its input (no sound) from the probe its seek reads anyway (steps/seek.py):
    one ffprobe per chunk, not two. None where that probe cannot be made."""
    from l1web.engine.steps.seek import frame_index

    index = frame_index(src)
    return _video_info(src, index.stream, None) if index is not None else None


def _video_info(src: Path, video: dict[str, Any] | None, audio: dict[str, Any] | None) -> VideoInfo:
    if video is None or not video.get("width") or not video.get("height"):
        raise EffectError(f"{src.name} has no video stream")
    width, height = int(video["width"]), int(video["height"])
    if _rotation(video) % 180 == 90:
        # ffmpeg rotates frames upright while decoding, so the pipe carries the turned size.
        width, height = height, width
    return VideoInfo(
        width=width,
        height=height,
        fps=_frame_rate(video),
        audio_codec=audio.get("codec_name", "") if audio else None,
    )


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"]))
    return round(float(stream.get("tags", {}).get("rotate", 0)))


def _frame_rate(stream: dict[str, Any]) -> str:
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = str(stream.get(key, ""))
        if _RATIONAL.fullmatch(rate):
            return rate
    return FALLBACK_FPS


def audio_args(info: VideoInfo) -> tuple[str, ...]:
    """Output arguments for the source's first audio stream (mapped optionally)."""
    if info.audio_codec is None:
        return ()
    return AUDIO_COPY_ARGS if info.audio_codec == "aac" else AUDIO_ENCODE_ARGS


def apply_filter(chain: str, src: Path, dst: Path, info: VideoInfo, *, timeout: float,
                 frames: tuple[int, int | None] | None = None) -> None:
    """One ffmpeg run: the first video stream through `chain`, the first audio stream kept."""
    seek, selection = _chunk(src, frames)
    ffmpeg(
        *seek, *INPUT_FLAGS, "-i", str(src),
        "-map", "0:v:0", *(("-map", "0:a:0?") if info.audio_codec else ("-an",)),
        "-vf", _trimmed(selection, f"{chain},{EVEN_SIZE_FILTER}"),
        *VIDEO_ENCODE_ARGS, *audio_args(info),
        str(dst),
        timeout=timeout,
    )


def decoder_args(src: Path, pix_fmt: str, fps: str,
                 frames: tuple[int, int | None] | None = None) -> list[str]:
    """ffmpeg writing the source's frames (or a chunk's) to stdout as raw `pix_fmt`, constant `fps`."""
    seek, selection = _chunk(src, frames)
    return [
        ffmpeg_exe(), *BASE_FLAGS, *seek, *INPUT_FLAGS, "-i", str(src),
        "-map", "0:v:0", "-vf", _trimmed(selection, EVEN_SIZE_FILTER), "-r", fps,
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1",
    ]


def encoder_args(src: Path, dst: Path, pix_fmt: str, size: str, info: VideoInfo) -> list[str]:
    """ffmpeg encoding raw `pix_fmt` frames from stdin, with the source's audio, into `dst`."""
    sound = ["-map", "1:a:0?"] if info.audio_codec else ["-an"]
    return [
        ffmpeg_exe(), *BASE_FLAGS,
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", size, "-framerate", info.fps,
        *INPUT_FLAGS, "-i", "pipe:0",
        *((*INPUT_FLAGS, "-i", str(src)) if info.audio_codec else ()),
        "-map", "0:v:0", *sound,
        *VIDEO_ENCODE_ARGS, *audio_args(info),
        str(dst),
    ]


def _chunk(src: Path, frames: tuple[int, int | None] | None) -> tuple[list[str], str | None]:
    # The same frame selection as every other chunked renderer (engine/steps/seek.py).
    if frames is None:
        return [], None
    from l1web.engine.steps.seek import chunk_input

    return chunk_input(src, frames)


def _trimmed(selection: str | None, chain: str) -> str:
    return f"{selection},{chain}" if selection else chain
