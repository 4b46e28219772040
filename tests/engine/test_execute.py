"""Execute: cached steps are not re-rendered, failures skip dependents, temp files vanish."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from l1web.engine import StepError, execute, run_step
from tests.engine.conftest import duration


def chain(render, media, width=64):
    return [
        render.source("v", media["av"]),
        {"id": "seg", "type": "SEGMENT", "config": {"duration": 1.0}, "inputs": ["v"]},
        {"id": "r", "type": "RESIZE", "config": {"width": width, "height": 48}, "inputs": ["seg"]},
    ]


def rendered(events):
    return [e["step_id"] for e in events if e["status"] == "completed"]


def test_first_run_renders_every_step(render, media):
    report = render.run(chain(render, media))
    assert report["status"] == "completed"
    assert rendered(render.events) == ["seg", "r"]
    assert report["counts"]["cached"] == 1  # the source
    assert report["executed"] == 2


def test_rerunning_an_unchanged_plan_renders_nothing(render, media):
    first = render.run(chain(render, media))
    second = render.run(chain(render, media))
    assert rendered(render.events) == [] and second["executed"] == 0
    assert second["output"] == first["output"]
    assert second["counts"]["cached"] == 3


def test_changing_the_last_node_renders_exactly_one_step(render, media):
    render.run(chain(render, media))
    report = render.run(chain(render, media, width=96))
    assert rendered(render.events) == ["r"] and report["executed"] == 1


def test_result_whose_file_left_the_store_is_rendered_again(render, media, store):
    first = render.run(chain(render, media))
    store.path_for(first["output"]).unlink()
    render.run(chain(render, media))
    assert rendered(render.events) == ["r"]


def test_failed_step_skips_its_dependents_with_its_reason(render, media):
    report = render.run([
        render.source("v", media["av"]),
        {"id": "good", "type": "SEGMENT", "config": {"duration": 0.5}, "inputs": ["v"]},
        {"id": "bad", "type": "SEGMENT", "config": {"offset": 30.0}, "inputs": ["v"]},
        {"id": "both", "type": "SEQUENCE", "inputs": ["good", "bad"]},
        {"id": "out", "type": "RESIZE", "config": {"width": 32, "height": 32}, "inputs": ["both"]},
    ])
    steps = report["steps"]
    assert report["status"] == "failed" and report["output"] is None
    assert steps["good"]["status"] == "completed"
    assert steps["bad"]["status"] == "failed" and "past the end" in steps["bad"]["error"]
    assert steps["both"]["status"] == steps["out"]["status"] == "skipped"
    assert "past the end" in steps["out"]["error"] and "past the end" in report["error"]


def test_missing_source_fails_the_run(render, media, store):
    nodes = chain(render, media)
    digest = nodes[0]["config"]["hash"]
    the_plan = render.plan(nodes)
    store.path_for(digest).unlink()
    report = execute(the_plan, store, render.results, temp_root=render.temp_root)
    assert report["steps"]["v"]["status"] == "failed"
    assert report["steps"]["r"]["status"] == "skipped"


def test_temp_files_are_removed_on_success_and_failure(render, media, temp_root):
    render.run(chain(render, media))
    render.run([render.source("v", media["av"]),
                {"id": "bad", "type": "SEGMENT", "config": {"offset": 30.0}, "inputs": ["v"]}])
    assert list(temp_root.iterdir()) == []


def test_progress_reports_each_transition_with_timing(render, media):
    render.run(chain(render, media))
    seen = [(e["step_id"], e["status"]) for e in render.events]
    assert seen == [("v", "cached"), ("seg", "running"), ("seg", "completed"),
                    ("r", "running"), ("r", "completed")]
    done = [e for e in render.events if e["status"] == "completed"]
    assert all(e["seconds"] > 0 and len(e["cache_id"]) == 64 for e in done)


def test_a_broken_progress_callback_does_not_break_the_run(render, media):
    def explode(event):
        raise RuntimeError("display gone")

    report = execute(render.plan(chain(render, media)), render.store, render.results,
                     temp_root=render.temp_root, progress=explode)
    assert report["status"] == "completed"


def test_thread_pool_runs_independent_steps_and_same_computation_once(render, media):
    nodes = [
        render.source("v", media["av"]),
        {"id": "a", "type": "SEGMENT", "config": {"duration": 0.5}, "inputs": ["v"]},
        {"id": "twin", "type": "SEGMENT", "config": {"duration": 0.5}, "inputs": ["v"]},
        {"id": "b", "type": "SEGMENT", "config": {"offset": 1.0}, "inputs": ["v"]},
        {"id": "q", "type": "SEQUENCE", "inputs": ["a", "twin", "b"]},
    ]
    events = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        report = execute(render.plan(nodes), render.store, render.results, pool,
                         temp_root=render.temp_root, progress=events.append)
    assert report["status"] == "completed"
    assert sorted(rendered(events)) == ["a", "b", "q"]
    assert report["steps"]["twin"]["status"] == "cached"
    assert duration(render.store.path_for(report["output"])) == pytest.approx(2.0, abs=0.15)


def test_run_step_renders_into_the_work_dir(render, media, tmp_path):
    the_plan = render.plan(chain(render, media))
    step = next(s for s in the_plan["steps"] if s["step_id"] == "seg")
    out = run_step(step, [media["av"]], tmp_path, timeout=60)
    assert out.parent == tmp_path and out.suffix == ".mp4"
    assert duration(out) == pytest.approx(1.0, abs=0.1)


def test_run_step_refuses_wrong_input_count_and_source_steps(render, media, tmp_path):
    the_plan = render.plan(chain(render, media))
    by_id = {s["step_id"]: s for s in the_plan["steps"]}
    with pytest.raises(StepError, match="inputs expected"):
        run_step(by_id["seg"], [], tmp_path)
    with pytest.raises(StepError, match="not rendered"):
        run_step(by_id["v"], [], tmp_path)


def test_render_timeout_fails_the_step(render, media):
    report = execute(render.plan(chain(render, media)), render.store, render.results,
                     temp_root=render.temp_root, timeout=0.001)
    assert report["status"] == "failed" and "timed out" in report["error"]
