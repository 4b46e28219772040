"""The render of `bench_small_jobs`' small job, as a function a plain RQ job can run.

`bench_small_jobs` times it in its own process (the in-process baseline) and enqueues it as a
raw RQ job on the same workers (the queue's own floor, beside L1's runs). It lives apart from
`bench_small_jobs`, which imports the dev L2, scipy and the test helpers, so that a horse
running it imports nothing the worker has not loaded already (`worker.py` preloads the engine).
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from l1web.engine.effects.image import load_rgb
from l1web.engine.effects.registry import get_effect
from l1web.engine.encoding import png_options


def render(src: str | Path, dst: str | Path) -> float:
    """Decode + invert + encode `src` into `dst`: the worker's decoder and effect and Pillow's
    encoder with the worker's settings; bare: not hashed as it is written, as the worker's
    output is (its `engine.written.save_image`), nor renamed into place. Seconds it took."""
    effect = get_effect("invert")
    started = time.perf_counter()
    rgb, _alpha = load_rgb(Path(src))
    Image.fromarray(effect.image(rgb, {}), "RGB").save(dst, format="PNG", **png_options())
    return time.perf_counter() - started
