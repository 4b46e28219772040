"""SEQUENCE: clips one after another — cut, crossfade or fade — in one ffmpeg filter graph.

Every clip is scaled and letterboxed to one target size and the first clip's frame rate, so
inputs of different sizes join. When any clip has sound, clips without it get silence of
their own length, so the sound stays in step with the picture.
"""

from __future__ import annotations

from typing import Any

from l1web.engine.encoding import AUDIO_ARGS, AUDIO_RATE, CONTAINER_ARGS, EVEN_SIZE, video_out
from l1web.engine.errors import StepError
from l1web.engine.steps.task import Clip, RenderTask, clip_info, num

#: The audio layout every clip is converted to before joining.
AUDIO_FORMAT = f"aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"


def sequence(job: RenderTask) -> None:
    clips = [clip_info(path) for path in job.inputs]
    for index, clip in enumerate(clips):
        if clip.duration <= 0:
            raise StepError(f"input {index} has no duration")
    fades = _fade_lengths(job.config["transition"], clips)
    video = job.kind == "video"
    audio = any(c.has_audio for c in clips)
    graph = _video_graph(job.config, clips, fades) if video else []
    if audio:
        graph += _audio_graph(job.config["transition"]["type"], clips, fades)
    maps = (["-map", "[v]"] if video else []) + (["-map", "[a]"] if audio else [])
    out = (video_out(str(job.out), audio=audio) if video
           else [*AUDIO_ARGS, *CONTAINER_ARGS, str(job.out)])
    job.run(*job.input_args(), "-filter_complex", ";".join(graph), *maps, *out)


def _fade_lengths(transition: dict[str, Any], clips: list[Clip]) -> list[float]:
    # A fade or crossfade never takes more than half a clip: short clips get shorter fades.
    if transition["type"] == "cut":
        return [0.0] * len(clips)
    return [min(transition["duration"], c.duration / 2) for c in clips]


def target_size(cfg: dict[str, Any], clips: list[Clip]) -> tuple[int, int]:
    pictures = [c for c in clips if c.has_video]
    choice = cfg["target_size"]
    if choice == "explicit":
        width, height = cfg["width"], cfg["height"]
    elif choice == "largest":
        best = max(pictures, key=lambda c: c.width * c.height)
        width, height = best.width, best.height
    else:
        pick = pictures[0] if choice == "first" else pictures[-1]
        width, height = pick.width, pick.height
    return width - width % 2, height - height % 2


def _video_graph(cfg: dict[str, Any], clips: list[Clip], fades: list[float]) -> list[str]:
    width, height = target_size(cfg, clips)
    fps = num(clips[0].fps)
    bg = "0x" + cfg["background"][1:]
    kind = cfg["transition"]["type"]
    graph = []
    for i, clip in enumerate(clips):
        chain = (f"[{i}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                 f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color={bg},setsar=1,fps={fps},"
                 f"format=yuv420p,trim=end={num(clip.duration)},setpts=PTS-STARTPTS")
        if kind == "fade":
            chain += _fade_filters("fade", clip.duration, fades[i])
        graph.append(f"{chain}[v{i}]")
    labels = [f"[v{i}]" for i in range(len(clips))]
    if kind == "crossfade":
        graph += _xfade_chain(labels, clips, fades)
    else:
        graph.append(f"{''.join(labels)}concat=n={len(clips)}:v=1:a=0,{EVEN_SIZE}[v]")
    return graph


def _xfade_chain(labels: list[str], clips: list[Clip], fades: list[float]) -> list[str]:
    graph, last, elapsed = [], labels[0], clips[0].duration
    for i in range(1, len(clips)):
        fade = min(fades[i - 1], fades[i])
        out = "[v]" if i == len(clips) - 1 else f"[x{i}]"
        graph.append(f"{last}{labels[i]}xfade=transition=fade:duration={num(fade)}"
                     f":offset={num(elapsed - fade)}{out}")
        last, elapsed = out, elapsed - fade + clips[i].duration
    if len(clips) == 1:
        graph.append(f"{labels[0]}null[v]")
    return graph


def _audio_graph(kind: str, clips: list[Clip], fades: list[float]) -> list[str]:
    graph = []
    for i, clip in enumerate(clips):
        source = f"[{i}:a]{AUDIO_FORMAT}" if clip.has_audio else (
            f"anullsrc=r={AUDIO_RATE}:cl=stereo")
        chain = f"{source},apad,atrim=end={num(clip.duration)},asetpts=PTS-STARTPTS"
        if kind == "fade":
            chain += _fade_filters("afade", clip.duration, fades[i])
        graph.append(f"{chain}[a{i}]")
    labels = [f"[a{i}]" for i in range(len(clips))]
    if kind != "crossfade" or len(clips) == 1:
        graph.append(f"{''.join(labels)}concat=n={len(clips)}:v=0:a=1[a]")
        return graph
    last = labels[0]
    for i in range(1, len(clips)):
        out = "[a]" if i == len(clips) - 1 else f"[y{i}]"
        fade = min(fades[i - 1], fades[i])
        graph.append(f"{last}{labels[i]}acrossfade=d={num(fade)}{out}")
        last = out
    return graph


def _fade_filters(name: str, duration: float, fade: float) -> str:
    return (f",{name}=t=in:st=0:d={num(fade)}"
            f",{name}=t=out:st={num(duration - fade)}:d={num(fade)}")
