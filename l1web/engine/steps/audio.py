"""MUX (picture of one input, sound of another) and AUDIO_MIX (sounds summed with gains)."""

from __future__ import annotations

from l1web.engine.encoding import AUDIO_ARGS, CONTAINER_ARGS, EVEN_SIZE, VIDEO_ARGS
from l1web.engine.errors import StepError
from l1web.engine.steps.task import RenderTask, clip_info, num


def mux(job: RenderTask) -> None:
    cfg = job.config
    video, audio = cfg["video_stream"], cfg["audio_stream"]
    if not clip_info(job.inputs[audio]).has_audio:
        raise StepError(f"input {audio} (audio_stream) has no audio stream")
    picture = clip_info(job.inputs[video])
    # Our own renders are web-ready H.264 already: copy them rather than re-encode.
    copy = picture.codec == "h264" and picture.pix_fmt == "yuv420p"
    vcodec = ["-c:v", "copy"] if copy else ["-vf", EVEN_SIZE, *VIDEO_ARGS]
    job.run(*job.input_args(), "-map", f"{video}:v:0", "-map", f"{audio}:a:0", *vcodec,
            *AUDIO_ARGS, *(["-shortest"] if cfg["shortest"] else []), *CONTAINER_ARGS,
            str(job.out))


def audio_mix(job: RenderTask) -> None:
    for index, path in enumerate(job.inputs):
        if not clip_info(path).has_audio:
            raise StepError(f"input {index} has no audio stream")
    gains = job.config["gains"]
    graph = [f"[{i}:a]volume={num(g)}[g{i}]" for i, g in enumerate(gains)]
    labels = "".join(f"[g{i}]" for i in range(len(gains)))
    normalize = int(job.config["normalize"])
    graph.append(f"{labels}amix=inputs={len(gains)}:duration=longest:normalize={normalize}[a]")
    job.run(*job.input_args(), "-filter_complex", ";".join(graph), "-map", "[a]", "-vn",
            *AUDIO_ARGS, *CONTAINER_ARGS, str(job.out))
