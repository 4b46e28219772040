"""PNG encoding profiles (issue 19): the bytes follow the setting, and so does the cache id."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from l1web.engine import encoding, parse_dag, plan
from l1web.engine.errors import StepError
from l1web.engine.steps import run_step

A = "a" * 64


@pytest.fixture()
def profile():
    """`profile(name)` switches this process's PNG_ENCODING; the default is restored after."""
    yield encoding.configure
    encoding.configure(encoding.DEFAULT_PNG)


def invert_step() -> dict:
    dag = parse_dag({"nodes": [{"id": "a", "type": "SOURCE", "config": {"hash": A}},
                               {"id": "fx", "type": "EFFECT", "config": {"effect": "invert"}, "inputs": ["a"]}],
                     "output": "fx"})
    return next(s for s in plan(dag, {A: {"media": {"kind": "image"}}})["steps"] if s["step_id"] == "fx")


def photo_like(path):
    """The sample cat: a drawing over fur textures (the kind of picture renders are)."""
    from l1web.samples import draw_cat

    draw_cat().convert("RGB").save(path)
    return path


def test_each_profile_renders_the_same_pixels_with_its_own_bytes(tmp_path, profile):
    src = photo_like(tmp_path / "in.png")
    outputs = {}
    for name in ("fast", "small"):
        profile(name)
        work = tmp_path / name
        work.mkdir()
        outputs[name] = run_step(invert_step(), [src], work)
    pixels = {name: np.asarray(Image.open(path)) for name, path in outputs.items()}
    assert np.array_equal(pixels["fast"], 255 - np.asarray(Image.open(src)))
    assert np.array_equal(pixels["fast"], pixels["small"])  # lossless either way
    assert outputs["fast"].read_bytes() != outputs["small"].read_bytes()
    assert outputs["small"].stat().st_size < outputs["fast"].stat().st_size


def test_a_step_planned_under_one_profile_is_never_rendered_under_another(tmp_path, profile):
    src = photo_like(tmp_path / "in.png")
    profile("small")
    step = invert_step()  # its cache id promises level-9 bytes
    profile("fast")
    with pytest.raises(StepError, match="PNG_ENCODING differs"):
        run_step(step, [src], tmp_path)
    assert not list(tmp_path.glob("out*"))


def test_an_unknown_profile_is_refused_by_name():
    with pytest.raises(ValueError, match="PNG_ENCODING must be one of fast, small"):
        encoding.configure("tiny")
    assert encoding.png_profile() == encoding.DEFAULT_PNG
