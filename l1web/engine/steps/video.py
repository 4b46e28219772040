"""Single-input renderers: SEGMENT, RESIZE and TRANSFORM, for video, images and audio."""

from __future__ import annotations

from typing import Any

from l1web.engine.encoding import AUDIO_ARGS, CONTAINER_ARGS, EVEN_SIZE, png_ffmpeg_args, video_out
from l1web.engine.errors import StepError
from l1web.engine.steps.task import RenderTask, clip_info, num

#: Smallest and largest factor one ffmpeg `atempo` filter is asked for.
ATEMPO_RANGE = (0.5, 2.0)


def segment(job: RenderTask) -> None:
    """`offset`/`duration` of a video or audio; precise re-encodes, fast copies streams."""
    cfg = job.config
    clip = clip_info(job.inputs[0])
    if cfg["offset"] >= clip.duration:
        raise StepError(f"offset {cfg['offset']:g} s is past the end of the input "
                        f"({clip.duration:g} s)")
    # Input seeking: fast, and frame-accurate when re-encoding (ffmpeg decodes from the
    # keyframe before the offset and drops what precedes it).
    head = ["-ss", num(cfg["offset"])] if cfg["offset"] else []
    tail = ["-t", num(cfg["duration"])] if cfg["duration"] is not None else []
    args = [*head, *job.input_args(), *tail]
    if not cfg["precise"]:
        job.run(*args, "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", *CONTAINER_ARGS,
                str(job.out))
    elif job.kind == "audio":
        job.run(*args, "-vn", *AUDIO_ARGS, *CONTAINER_ARGS, str(job.out))
    else:
        job.run(*args, "-map", "0:v:0", "-map", "0:a:0?", "-vf", EVEN_SIZE,
                *video_out(str(job.out), audio=True))


def resize(job: RenderTask) -> None:
    """Scale to width×height by `mode`: fit (letterbox), fill (crop), stretch, pad."""
    chain = resize_chain(job.config)
    _render_visual(job, chain)


def resize_chain(cfg: dict[str, Any]) -> str:
    w, h = cfg["width"], cfg["height"]
    pad = f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=0x{cfg['background'][1:]}"
    chains = {
        "fit": f"scale={w}:{h}:force_original_aspect_ratio=decrease,{pad}",
        "fill": f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}",
        "stretch": f"scale={w}:{h}",
        "pad": f"scale='min({w},iw)':'min({h},ih)':force_original_aspect_ratio=decrease,{pad}",
    }
    return chains[cfg["mode"]] + ",setsar=1"


def transform(job: RenderTask) -> None:
    """Colour, blur, sharpen and speed, as one filter chain in a fixed order."""
    fx = job.config["effects"]
    if job.kind == "audio":
        job.run(*job.input_args(), "-vn", "-af", atempo_chain(fx["speed"]), *AUDIO_ARGS,
                *CONTAINER_ARGS, str(job.out))
        return
    chain = transform_chain(fx)
    if job.kind == "image":
        _render_visual(job, chain)
        return
    job.run(*job.input_args(), "-map", "0:v:0", *job.sound(),
            "-vf", job.trim(f"{chain},{EVEN_SIZE}"), *transform_audio(fx, whole=not job.frames),
            *video_out(str(job.out), audio=not job.frames))


def transform_audio(fx: dict[str, Any], *, whole: bool = True) -> list[str]:
    """The sound filter of a TRANSFORM (the join of a chunked one uses it too)."""
    return ["-af", atempo_chain(fx["speed"])] if whole else []


def transform_chain(fx: dict[str, Any]) -> str:
    filters = []
    if (fx["saturation"], fx["contrast"], fx["brightness"], fx["gamma"]) != (1, 1, 0, 1):
        filters.append(f"eq=saturation={num(fx['saturation'])}:contrast={num(fx['contrast'])}"
                       f":brightness={num(fx['brightness'])}:gamma={num(fx['gamma'])}")
    if fx["hue"]:
        filters.append(f"hue=h={num(fx['hue'])}")
    if fx["blur"]:
        # A box radius may not exceed half the plane; clamp so small inputs still blur.
        r = fx["blur"]
        filters.append(f"boxblur=luma_radius=min({r}\\,min(w\\,h)/2-1)"
                       f":chroma_radius=min({r}\\,min(cw\\,ch)/2-1)")
    if fx["sharpen"]:
        filters.append(f"unsharp=5:5:{num(fx['sharpen'])}:5:5:0")
    if fx["speed"] != 1:
        filters.append(f"setpts=PTS/{num(fx['speed'])}")
    return ",".join(filters) or "null"


def atempo_chain(speed: float) -> str:
    """`atempo` filters whose product is `speed`, each factor within ATEMPO_RANGE."""
    lo, hi = ATEMPO_RANGE
    factors = []
    while speed > hi or speed < lo:
        step = hi if speed > hi else lo
        factors.append(step)
        speed /= step
    factors.append(speed)
    return ",".join(f"atempo={num(f)}" for f in factors)


def _render_visual(job: RenderTask, chain: str) -> None:
    if job.kind == "image":
        job.run(*job.input_args(), "-vf", chain, "-frames:v", "1", "-update", "1",
                *png_ffmpeg_args(), str(job.out))
        return
    job.run(*job.input_args(), "-map", "0:v:0", *job.sound(), "-vf", job.trim(f"{chain},{EVEN_SIZE}"),
            *video_out(str(job.out), audio=not job.frames))
