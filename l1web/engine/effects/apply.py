"""Running an effect on a file: the one entry point the engine calls."""

from __future__ import annotations

import os
from pathlib import Path

from l1web.engine.effects.effect import Effect
from l1web.engine.effects.errors import EffectError
from l1web.engine.effects.image import apply_image, image_format
from l1web.engine.effects.video import apply_video

#: Output suffix of video renders (H.264 + AAC in MP4, see encoding.py).
VIDEO_SUFFIX = ".mp4"


def apply_effect(
    effect: Effect, params: object, src: Path, dst: Path, kind: str, *, timeout: float,
    frames: tuple[int, int | None] | None = None,
) -> None:
    """Render `effect(params)` of `src` into `dst`: kind "image" (format by suffix) or "video".

    Raises EffectError for bad params, kinds, formats or images, FFmpegError when ffmpeg fails
    or runs past `timeout` seconds. `frames` renders one chunk of a video: those frames only,
    without sound (engine/chunks.py). `dst` appears whole or not at all: the render goes to a
    temporary name beside it and is renamed into place.
    """
    effect.check_kind(kind)
    resolved = effect.resolve_params(params)
    if kind == "image":
        image_format(dst)
    elif dst.suffix.lower() != VIDEO_SUFFIX:
        raise EffectError(f"video output must be {VIDEO_SUFFIX}, not {dst.suffix!r}")
    # Same suffix, so ffmpeg and Pillow pick the same format for the temporary file.
    part = dst.with_name(f".{dst.stem}.part{dst.suffix}")
    try:
        if kind == "image":
            apply_image(effect, resolved, src, part)
        else:
            apply_video(effect, resolved, src, part, timeout=timeout, frames=frames)
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
