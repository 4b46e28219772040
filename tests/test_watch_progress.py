"""Progress inside a step, with real RQ workers and ffmpeg: what GET /runs/{id} shows while a
video step renders (ffmpeg's -progress, and the numpy frame loop), and the pure pieces."""

from __future__ import annotations

import importlib.util
import io
import time

import pytest
from PIL import Image

from l1web.engine.estimate import expect
from l1web.engine.watch import Redactor, StepWatch
from l1web.paths import ROOT
from l1web.runs.model import RunStatus
from l1web.runs.progress import run_progress, step_progress
from l1web.runs.service import Submission
from tests.test_runs_workers import ALICE, put_video


def watch_run(client, run_id: str, step_id: str, timeout: float = 240, also=None) -> tuple[list[dict], dict]:
    """Poll GET /runs/{id} until the run ends: (the step's progress while it ran, the last answer)."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/runs/{run_id}", headers={"Accept": "application/json"})
        assert answer.status_code == 200
        run = answer.get_json()
        step = next((s for s in run["steps"] if s["step_id"] == step_id), {})  # none before planning
        if step.get("status") == "running":
            seen.append(dict(step["progress"], run_percent=run["progress"]["percent"]))
            if also is not None:
                also()
        if not RunStatus(run["status"]).live:
            return seen, run
        time.sleep(0.1)
    raise AssertionError(f"run still live after {timeout} s")


def distinct(values: list[float]) -> list[float]:
    out: list[float] = []
    for value in values:
        if not out or value != out[-1]:
            out.append(value)
    return out


def test_a_20_second_ffmpeg_step_reports_increasing_progress_to_100(alice_client, service, state, store,
                                                                      start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=20, size="640x360")
    start_worker()
    run, _ = service.submit(Submission("blur", [clip], params={"sigma": 4}), ALICE)
    previews: list[bytes] = []

    def look() -> None:  # ffmpeg's "last rendered" frame, while the step runs
        with alice_client.get(f"/runs/{run['id']}/steps/blur/preview") as answer:
            if answer.status_code == 200:
                assert answer.mimetype == "image/jpeg"
                previews.append(answer.data)

    seen, final = watch_run(alice_client, run["id"], "blur", also=look)
    assert final["status"] == "completed", final.get("error")
    assert previews, "no last rendered frame while the ffmpeg step ran"
    assert Image.open(io.BytesIO(previews[-1])).size == (320, 180)
    live = [p for p in seen if p["percent"] and p["percent"] < 100]
    assert len(live) >= 3, seen  # several snapshots while it rendered
    percents = distinct([p["percent"] for p in seen])
    assert percents == sorted(percents) and len(set(percents)) == len(percents), percents
    assert all(p["fps"] and p["fps"] > 0 for p in live), live
    assert all(p["eta"] is not None and p["eta"] > 0 for p in live), live
    assert all(p["total_frames"] == 500 for p in seen), seen  # 20 s × 25 fps, from the analysis
    frames = distinct([p["frames"] for p in live])
    assert frames == sorted(frames)
    step = next(s for s in final["steps"] if s["step_id"] == "blur")
    assert step["progress"]["percent"] == 100 and step["progress"]["eta"] == 0
    assert step["progress"]["frames"] >= 490
    assert final["progress"] == {"percent": 100.0, "eta": 0.0}
    # The run's percent is its (only rendered) step's.
    assert all(p["run_percent"] == p["percent"] for p in live)


def test_a_numpy_frame_loop_reports_frames(alice_client, service, state, store, start_worker, tmp_path):
    # Long enough for several progress snapshots (one every 0.5 s) on a quiet machine: a 6 s 320x240
    # clip rendered within one interval, so every snapshot said 0 frames.
    clip = put_video(store, tmp_path, seconds=20, size="640x480")
    start_worker()
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    previews: list[bytes] = []
    url = f"/runs/{run['id']}/steps/dog/preview"

    def look() -> None:  # while the step runs: its last rendered frame, and the node showing it
        with alice_client.get(url) as answer:
            if answer.status_code == 200:
                assert answer.mimetype == "image/jpeg"
                previews.append(answer.data)
                fragment = alice_client.get(f"/run/{run['id']}/fragment").get_data(as_text=True)
                # Steps only move forward, so a step still running after the fragment was drawn was
                # running while it was drawn (the legend names every state, so the fragment's own
                # text cannot tell).
                after = alice_client.get(f"/runs/{run['id']}", headers={"Accept": "application/json"}).get_json()
                if any(s["step_id"] == "dog" and s["status"] == "running" for s in after["steps"]):
                    assert f'<image class="dag-thumb" href="{url}?at=' in fragment, fragment

    seen, final = watch_run(alice_client, run["id"], "dog", also=look)
    assert final["status"] == "completed", final.get("error")
    assert previews, "no last rendered frame while the step ran"
    assert Image.open(io.BytesIO(previews[0])).size == (320, 240)
    live = [p for p in seen if p["frames"]]
    assert live, seen
    assert distinct([p["frames"] for p in live]) == sorted(distinct([p["frames"] for p in live]))
    assert all(p["total_frames"] == 500 and p["fps"] > 0 for p in live)
    step = next(s for s in final["steps"] if s["step_id"] == "dog")
    assert step["progress"]["percent"] == 100 and step["progress"]["frames"] == 500


# Pure parts ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_watch_throttles_and_never_goes_backwards():
    clock, sent = Clock(), []
    watch = StepWatch(seconds=10, frames=250, sink=lambda p, t: sent.append((p, t)), clock=clock, wall=clock)
    clock.now = 1.0
    watch.ffmpeg_progress({"frame": "50", "out_time_us": "2000000", "fps": "50.0", "speed": "2.0x",
                           "progress": "continue"})
    watch.ffmpeg_progress({"frame": "60", "out_time_us": "N/A", "progress": "continue"})  # within 0.5 s
    assert len(sent) == 1 and sent[0][0]["percent"] == 20.0 and sent[0][0]["eta"] == 4.0
    clock.now = 2.0
    watch.ffmpeg_progress({"frame": "40", "progress": "continue"})  # a lower count is ignored
    assert sent[-1][0]["frames"] == 60 and sent[-1][0]["percent"] == 24.0
    clock.now = 2.1
    watch.line("a line")
    watch.finish(ok=True)
    assert sent[-1][0]["percent"] == 100 and sent[-1][0]["eta"] == 0 and sent[-1][1] == "a line\n"


def test_a_failing_sink_does_not_break_the_render():
    def broken(progress, text):
        raise ConnectionError("redis away")

    watch = StepWatch(seconds=1, sink=broken)
    watch.frames_done(3)
    watch.finish(ok=False)


def test_redactor_shortens_paths_and_hides_secrets():
    digest = "ab" + "c" * 62
    redact = Redactor({"/data/cache/work": "<work>", "/data/cache": "<cache>"}, secrets=["s3cr3t-worker-token"])
    text = redact(f"-i /data/cache/ab/{digest} /data/cache/work/step-1/out.mp4 "
                  "Authorization: Bearer abc.def-123 auth_token=xyz s3cr3t-worker-token")
    assert text == ("-i <cache>/abcccccccccc… <work>/step-1/out.mp4 Authorization: Bearer [redacted] "
                    "auth_token=[redacted] [redacted]")


def test_expectations_follow_the_graph():
    analysis = {"v": {"media": {"kind": "video", "duration": 20.0, "fps": 25.0}},
                "i": {"media": {"kind": "image", "duration": None, "fps": None}}}
    plan = {"steps": [
        {"step_id": "src", "type": "SOURCE", "cache_id": "v", "inputs": [], "kind": "video", "config": {}},
        {"step_id": "cut", "type": "SEGMENT", "inputs": ["src"], "kind": "video",
         "config": {"offset": 5, "duration": 10}},
        {"step_id": "fast", "type": "TRANSFORM", "inputs": ["cut"], "kind": "video",
         "config": {"effects": {"speed": 2}}},
        {"step_id": "both", "type": "SEQUENCE", "inputs": ["src", "fast"], "kind": "video",
         "config": {"transition": {"type": "cut"}}},
        {"step_id": "img", "type": "SOURCE", "cache_id": "i", "inputs": [], "kind": "image", "config": {}},
        {"step_id": "ink", "type": "EFFECT", "inputs": ["img"], "kind": "image", "config": {}},
    ]}
    got = expect(plan, analysis)
    assert got["cut"]["seconds"] == 10 and got["cut"]["frames"] == 250
    assert got["fast"]["seconds"] == 5
    assert got["both"]["seconds"] == 25 and got["both"]["frames"] == 625
    assert got["ink"] == {"seconds": None, "fps": None, "frames": 1, "weight": 2.0}
    assert got["src"]["weight"] == 0


def test_run_progress_is_weighted_by_expected_work():
    steps = [
        {"step_id": "a", "type": "EFFECT", "status": "completed", "expect": {"weight": 1.0}},
        {"step_id": "b", "type": "RESIZE", "status": "running", "expect": {"weight": 3.0}},
    ]
    for step, live in zip(steps, [None, {"percent": 50.0, "frames": 10}], strict=True):
        step["progress"] = step_progress(step, live)
    got = run_progress({"status": "running", "started": time.time() - 10}, steps)
    assert got["percent"] == 62.5  # (1×100 + 3×50) / 4, not 1 of 2 steps
    assert got["eta"] == pytest.approx(6.0, abs=0.2)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_py_draws_the_weighted_bar_and_each_running_steps_progress():
    spec = importlib.util.spec_from_file_location("render_cli", ROOT / "render.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    run = {"id": "r", "status": "running", "progress": {"percent": 50.0, "eta": 12.0}, "steps": [
        {"step_id": "src", "type": "SOURCE", "status": "cached"},
        {"step_id": "soft", "type": "EFFECT", "status": "completed", "progress": {"percent": 100.0}},
        {"step_id": "grey", "type": "EFFECT", "status": "running",
         "progress": {"percent": 42.4, "fps": 118.6, "eta": 3.2}},
    ]}
    screen = Terminal()
    cli.Progress(screen).show(run)
    text = screen.getvalue()
    assert f"[{'#' * 15}{'-' * 15}] 1/2 steps 50% ETA 12s  running" in text  # weighted, not 1 of 2
    assert "grey                     running 42% 119fps ETA 3s" in text
    plain = io.StringIO()
    cli.Progress(plain).show(run)
    assert plain.getvalue() == "[running] 1/2 steps 50% ETA 12s  soft:completed grey:running 42% 119fps ETA 3s\n"


def test_a_runs_view_is_one_read_of_what_four_were(state):
    """`Runs.view` (one Lua round trip) answers what get + snapshot + deliveries + progress did."""
    run_id = "d" * 64
    steps = [{"step_id": s, "type": "EFFECT", "inputs": [], "level": i, "cache_id": str(i) * 64}
             for i, s in enumerate(["a", "b:odd id", "c"])]
    state.runs.create({"id": run_id, "status": "running", "created": 1.0, "owner": "alice", "attempt": 1})
    state.runs.init_steps(run_id, steps, {"a": {"status": "completed"}, "b:odd id": {"status": "running"},
                                          "c": {"status": "pending"}})
    state.watch.publish(run_id, "b:odd id", {"frames": 7, "percent": 12.5, "state": "running", "eta": None})
    state.notify.record(run_id, {"try": 1, "ok": True})
    run, got_steps, states, deliveries, live = state.runs.view(run_id)
    assert run == state.runs.get(run_id)
    assert (None, got_steps, states) == state.runs.snapshot(run_id, with_run=False)
    assert deliveries == state.notify.deliveries(run_id) == [{"try": 1, "ok": True}]
    assert live == state.watch.progress(run_id, ["a", "b:odd id", "c"])
    assert live == {"b:odd id": {"frames": 7, "percent": 12.5, "state": "running", "eta": None}}
    assert state.runs.view("e" * 64) == (None, [], {}, [], {})


def test_publishing_costs_one_round_trip_and_survives_a_script_flush(state, redis_client):
    """The log script goes by its SHA (no `SCRIPT EXISTS` before every publish); after Redis lost
    its scripts (a restart), the next publish loads it and the line is appended once."""
    watches = state.watch
    watches.publish("run1", "step1", {"percent": 10}, "first line\n")
    def calls() -> dict[str, int]:
        return {name: stats["calls"] for name, stats in redis_client.info("commandstats").items()}

    before = calls()
    watches.publish("run1", "step1", {"percent": 20}, "second line\n")
    after = calls()
    sent = {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}
    assert sent.get("cmdstat_evalsha") == 1 and "cmdstat_script|exists" not in sent, sent
    redis_client.script_flush()
    watches.publish("run1", "step1", {"percent": 30}, "third line\n")
    assert watches.log("run1", "step1") == "first line\nsecond line\nthird line\n"
    assert watches.progress("run1", ["step1"])["step1"]["percent"] == 30


def test_a_new_plan_drops_the_earlier_attempts_progress_and_a_first_plan_reads_nothing(state, redis_client):
    """Re-planning (a rerun) deletes the old steps' progress and logs; the first plan of a run has
    none to delete and skips reading the old step ids (`first_plan`), writing the run's fields too."""
    run_id = "f" * 64
    step = {"step_id": "a", "type": "EFFECT", "inputs": [], "level": 0, "cache_id": "1" * 64}
    state.runs.create({"id": run_id, "status": "running", "created": 1.0, "owner": "alice", "attempt": 1})
    before = redis_client.info("commandstats").get("cmdstat_hkeys", {}).get("calls", 0)
    state.runs.init_steps(run_id, [step], {"a": {"status": "pending"}}, run_fields={"plan_id": "p1"},
                          first_plan=True)
    assert redis_client.info("commandstats").get("cmdstat_hkeys", {}).get("calls", 0) == before
    assert state.runs.get(run_id)["plan_id"] == "p1"
    state.watch.publish(run_id, "a", {"percent": 50}, "old attempt\n")
    state.runs.init_steps(run_id, [step], {"a": {"status": "pending"}}, run_fields={"plan_id": "p2"})
    assert state.watch.progress(run_id, ["a"]) == {} and state.watch.log(run_id, "a") is None
    assert state.runs.get(run_id)["plan_id"] == "p2"
