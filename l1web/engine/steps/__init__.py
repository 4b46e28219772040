"""Renderers, one per node type, and `run_step`: the unit of work a worker performs.

`run_step` takes a plan step (plain data) and the local paths of its inputs, renders into a
work directory and returns the output file; it knows nothing of stores, indexes or queues.
A chunk step (`"frames"`) renders its frames only; a join step (`"join"`) joins its chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from l1web.engine.encoding import SUFFIX, encoder_version
from l1web.engine.errors import StepError
from l1web.engine.ffmpeg import RENDER_TIMEOUT
from l1web.engine.plan import Step
from l1web.engine.steps import audio, compose, join, sequence, video
from l1web.engine.steps.task import RenderTask


def effect(job: RenderTask) -> None:
    """EFFECT: hand the input to the effects package, which renders image or video.

    Kept here rather than in a module of its own: it is one call, and a room entered for it
    cost a run's path a hop (`devtools/trace_run_path.py`).
    """
    from l1web.engine.effects import get_effect
    from l1web.engine.effects.apply import apply_effect

    chosen = get_effect(job.config["effect"])
    apply_effect(chosen, job.config["params"], job.inputs[0], job.out, job.kind,
                 timeout=job.timeout, frames=job.frames)


RENDERERS: dict[str, Callable[[RenderTask], None]] = {
    "SEGMENT": video.segment,
    "RESIZE": video.resize,
    "TRANSFORM": video.transform,
    "SEQUENCE": sequence.sequence,
    "LAYER": compose.layer,
    "BLEND": compose.blend,
    "MUX": audio.mux,
    "AUDIO_MIX": audio.audio_mix,
    "EFFECT": effect,
}


def run_step(step: Step, input_paths: list[Path], work_dir: Path, *,
             timeout: float = RENDER_TIMEOUT) -> Path:
    """Render one step into `work_dir`; the path of the file written (`out.<suffix>`)."""
    render = RENDERERS.get(step["type"])
    if render is None:
        raise StepError(f"step {step['step_id']!r}: {step['type']} steps are not rendered")
    if len(input_paths) != len(step["inputs"]):
        raise StepError(f"step {step['step_id']!r}: {len(step['inputs'])} inputs expected, "
                        f"{len(input_paths)} given")
    planned = step.get("encoder")
    if planned and planned != encoder_version():
        # Its cache id promises the planned settings: rendering with others would make the id
        # name two different byte strings. Workers must share PNG_ENCODING.
        raise StepError(f"step {step['step_id']!r} was planned with encoder {planned}, but this worker "
                        f"encodes as {encoder_version()} (PNG_ENCODING differs between workers)")
    out = Path(work_dir) / f"out{SUFFIX[step['kind']]}"
    frames = tuple(step["frames"]) if step.get("frames") else None
    task = RenderTask(step["node_id"], step["config"], [Path(p) for p in input_paths],
                      list(step["input_kinds"]), step["kind"], out, timeout, frames)
    if step.get("join"):  # a chunked step's last part: its chunks joined (engine/chunks.py)
        join.join(task, step["type"], [list(s) for s in step["join"]["frames"]])
    else:
        render(task)
    if not out.is_file() or out.stat().st_size == 0:
        raise StepError(f"step {step['step_id']!r}: {step['type']} wrote no output")
    return out
