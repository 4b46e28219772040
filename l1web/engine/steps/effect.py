"""EFFECT: hand the input to the effects package, which renders image or video."""

from __future__ import annotations

from l1web.engine.steps.task import RenderTask


def effect(job: RenderTask) -> None:
    from l1web.engine.effects import get_effect
    from l1web.engine.effects.apply import apply_effect

    chosen = get_effect(job.config["effect"])
    apply_effect(chosen, job.config["params"], job.inputs[0], job.out, job.kind,
                 timeout=job.timeout, frames=job.frames)
