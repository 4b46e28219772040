"""What a renderer is handed, and the helpers every renderer shares."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from l1web.engine import ffmpeg
from l1web.engine.errors import StepError
from l1web.engine.ffmpeg import MEDIA_INPUT_FLAGS
from l1web.engine.media import MAX_PIXELS, frame_rate
from l1web.engine.schema import Config

#: Frame rate, in frames per second, assumed when a video does not declare one.
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class RenderTask:
    """One step to render: filled config, input files and kinds, where to write, how long."""

    node: str
    config: Config
    inputs: list[Path]
    input_kinds: list[str]
    kind: str
    out: Path
    timeout: float
    #: A chunk's frame range `[start, end)` (end None: to the end), or None for the whole video.
    frames: tuple[int, int | None] | None = None

    @cached_property
    def chunk_inputs(self) -> list[tuple[list[str], str | None]]:
        """Per input: (`-ss` before its `-i`, trim filter) selecting the chunk's frames (steps/seek.py).

        Frames are chosen by index, so a chunk is exactly its frames whatever the timestamps;
        the trim's `setpts` restarts the chunk's clock at 0 so the join lays chunks end to end.
        """
        from l1web.engine.steps.seek import chunk_input

        return [chunk_input(path, self.frames) if self.frames and kind == "video" else ([], None)
                for path, kind in zip(self.inputs, self.input_kinds, strict=True)]

    def trim(self, chain: str) -> str:
        """`chain` preceded, for a chunk, by the selection of input 0's frames."""
        selection = self.chunk_inputs[0][1] if self.frames else None
        return f"{selection},{chain}" if selection else chain

    def video_input(self, index: int, graph: list[str]) -> str:
        """The filter-graph label of input `index`'s picture: trimmed to the chunk when it is video."""
        selection = self.chunk_inputs[index][1] if self.frames else None
        if not selection:
            return f"[{index}:v]"
        graph.append(f"[{index}:v]{selection}[t{index}]")
        return f"[t{index}]"

    def sound(self) -> list[str]:
        """Maps input 0's sound when rendering whole; chunks are silent (the join adds the sound)."""
        return [] if self.frames else ["-map", "0:a:0?"]

    def run(self, *args: str) -> None:
        """Run ffmpeg with this job's timeout."""
        ffmpeg.ffmpeg(*args, timeout=self.timeout)

    def input_args(self) -> list[str]:
        """`-i` for every input, each preceded by the safe input flags (and a chunk's seek)."""
        args: list[str] = []
        for index, path in enumerate(self.inputs):
            seek = self.chunk_inputs[index][0] if self.frames else []
            args += [*seek, *MEDIA_INPUT_FLAGS, "-i", str(path)]
        return args


@dataclass(frozen=True)
class Clip:
    """What a renderer needs to know about a video or audio input at run time."""

    width: int
    height: int
    fps: float
    duration: float
    has_video: bool
    has_audio: bool
    codec: str
    pix_fmt: str


def clip_info(path: Path) -> Clip:
    """Probe one input: size, rate, duration and streams (duration of video when present)."""
    data = ffmpeg.probe(path, safe=True)
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    duration = _seconds((video or {}).get("duration")) or _seconds(
        data.get("format", {}).get("duration"))
    v = video or {}
    return Clip(
        int(v.get("width") or 0), int(v.get("height") or 0), frame_rate(v) or DEFAULT_FPS, duration or 0.0,
        video is not None, has_audio, v.get("codec_name", ""), v.get("pix_fmt", ""),
    )


def check_scaled(index: int, width: int, height: int, scale: float) -> None:
    """Refuse a layer that scaling would blow up past the pixel limit."""
    if width * height * scale * scale > MAX_PIXELS:
        raise StepError(f"input {index} scaled by {scale:g} would be "
                        f"{round(width * scale)}x{round(height * scale)} pixels, over the limit")


def num(value: float) -> str:
    """A number for a filter graph: fixed point, never an exponent."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _seconds(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]  # float() judges any value; refusals answered below
    except (TypeError, ValueError):
        return None
