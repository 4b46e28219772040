"""LAYER and BLEND on video: overlays and blend modes as one ffmpeg filter graph.

Inputs after the first are held on their last frame, and the output ends with the base
(input 0), so a short overlay or a still image lasts as long as the base does.
"""

from __future__ import annotations

from l1web.engine.encoding import EVEN_SIZE, video_out
from l1web.engine.steps import images
from l1web.engine.steps.task import RenderTask, check_scaled, clip_info, num

#: Our blend mode names → ffmpeg's `blend` filter mode names.
FFMPEG_MODES = {"add": "addition"}
#: Holds a layer on its last frame for ever; `shortest=1` then ends with the base.
HOLD = "tpad=stop=-1:stop_mode=clone"


def layer(job: RenderTask) -> None:
    if job.kind == "image":
        images.layer(job)
        return
    graph: list[str] = []
    base = job.video_input(0, graph)
    for i, entry in enumerate(job.config["inputs"][1:], start=1):
        if entry["scale"] > 1:
            size = clip_info(job.inputs[i])
            check_scaled(i, size.width, size.height, entry["scale"])
        chain = [f"scale=iw*{num(entry['scale'])}:ih*{num(entry['scale'])}"] * (
            entry["scale"] != 1)
        chain.append("format=rgba")
        if entry["opacity"] < 1:
            chain.append(f"colorchannelmixer=aa={num(entry['opacity'])}")
        x, y = entry["position"]
        graph.append(f"{job.video_input(i, graph)}{','.join([*chain, HOLD])}[l{i}]")
        graph.append(f"{base}[l{i}]overlay=x={x}:y={y}:shortest=1[b{i}]")
        base = f"[b{i}]"
    graph.append(f"{base}{EVEN_SIZE}[v]")
    job.run(*job.input_args(), "-filter_complex", ";".join(graph), "-map", "[v]",
            *job.sound(), *video_out(str(job.out), audio=not job.frames))


def blend(job: RenderTask) -> None:
    """base + (mode(base, layer) - base) × opacity, in RGB; the layer is scaled to the base."""
    if job.kind == "image":
        images.blend(job)
        return
    base = clip_info(job.inputs[0])
    mode = FFMPEG_MODES.get(job.config["mode"], job.config["mode"])
    graph: list[str] = []
    graph += [
        f"{job.video_input(0, graph)}format=gbrp[a]",
        f"{job.video_input(1, graph)}scale={base.width}:{base.height},setsar=1,format=gbrp,{HOLD}[b]",
        f"[a][b]blend=all_mode={mode}:all_opacity={num(job.config['opacity'])}:shortest=1,"
        f"{EVEN_SIZE}[v]",
    ]
    job.run(*job.input_args(), "-filter_complex", ";".join(graph), "-map", "[v]",
            *job.sound(), *video_out(str(job.out), audio=not job.frames))
