"""Chunked steps through the queue: real RQ workers, real Redis, real ffmpeg (issue 16).

A 12 s clip with CHUNK_SECONDS=3 and CHUNK_MIN_SECONDS=5 is rendered as 4 chunks and a join.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from rq import Worker

from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User

ALICE = User("alice")
RUN_WAIT = 240
CHUNK_ENV = {"CHUNK_SECONDS": "3", "CHUNK_MIN_SECONDS": "5"}
CHUNKS = [f"dog~c{i}" for i in range(4)]


@pytest.fixture()
def settings(settings):
    return settings.with_changes(chunk_seconds=3.0, chunk_min_seconds=5.0)


@pytest.fixture()
def worker_env(worker_env):
    return {**worker_env, **CHUNK_ENV}


def put_clip(store: ContentStore, tmp_path: Path, size: str = "320x240", seconds: int = 12) -> str:
    path = tmp_path / "counter.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=25",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return store.put_file(path, source="test", owner="alice")


def wait_for_workers(conn, names: set[str]) -> None:
    deadline = time.monotonic() + 60
    while not names <= {w.name for w in Worker.all(connection=conn)}:
        assert time.monotonic() < deadline, "workers did not register"
        time.sleep(0.1)


def wait_for_run(state, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_WAIT
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run still live: {state.runs.step_states(run_id)}")


def frames_of(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def test_two_workers_render_the_chunks_of_one_step_and_the_chunks_are_removed(
        settings, state, store, service, start_worker, tmp_path):
    conn = connect(settings.redis_url, decode=False)
    clip = put_clip(store, tmp_path)
    start_worker(name="w-one")
    start_worker(name="w-two")
    wait_for_workers(conn, {"w-one", "w-two"})

    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    steps = {s["step_id"]: s for s in state.runs.steps(run["id"])}
    states = state.runs.step_states(run["id"])
    assert list(steps) == ["input", *CHUNKS, "dog"]
    assert all(states[c]["status"] == StepStatus.COMPLETED for c in CHUNKS)
    assert states["dog"]["status"] == StepStatus.COMPLETED
    assert states["dog"]["started"] >= max(states[c]["finished"] for c in CHUNKS)
    # Both workers rendered chunks, and chunks ran at the same time on them.
    workers = {states[c]["worker"] for c in CHUNKS}  # the worker of each step's (last) attempt
    assert workers == {"w-one", "w-two"}, workers
    spans = sorted((states[c]["started"], states[c]["finished"]) for c in CHUNKS)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans

    output = store.path_for(run["output_hash"])
    assert frames_of(output) == 12 * 25
    # The chunks were temporary: forgotten, deleted, listed for other hosts to sweep; nobody's media.
    for chunk_id in CHUNKS:
        digest = states[chunk_id]["output"]
        assert state.results.get_result(steps[chunk_id]["cache_id"]) is None
        assert not store.location(digest).exists() and state.cache.get(digest) is None
        assert state.removed_chunks.contains(digest)
    assert list((settings.cache_dir / "work").iterdir()) == []

    # The same submission again reuses the joined whole: nothing renders, chunks included.
    state.cache.set_shared(clip, True)  # bob may use alice's clip
    again, _ = service.submit(Submission("dog", [clip]), User("bob"))
    again = wait_for_run(state, again["id"])
    assert again["output_hash"] == run["output_hash"]
    assert {s["status"] for s in state.runs.step_states(again["id"]).values()} == {StepStatus.CACHED}


def busy_horse(worker_pid: int) -> psutil.Process:
    """The worker's child that is rendering (it runs ffmpeg), not its idle spare horse or scheduler."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [c for c in psutil.Process(worker_pid).children() if c.children()]
        if busy:
            return busy[0]
        time.sleep(0.05)
    raise AssertionError("no work-horse of the worker is running ffmpeg")


def kill_every_child(worker_pid: int) -> list[int]:
    """SIGKILL the worker's rendering horse and every other child (a spare horse, RQ's scheduler)
    at once, as an OOM killer sweeping the machine might; the pids killed."""
    horse = busy_horse(worker_pid)
    children = psutil.Process(worker_pid).children()
    assert horse in children
    for child in children:
        child.send_signal(signal.SIGKILL)
    return [child.pid for child in children]


@pytest.mark.parametrize("retries", [0, 2])
def test_a_worker_killed_mid_chunk_costs_only_that_chunk(settings, state, store, service, start_worker,
                                                        tmp_path, retries):
    conn = connect(settings.redis_url, decode=False)
    clip = put_clip(store, tmp_path, size="640x360")
    # A token lost with the killed children is put back by the next maintenance sweep (every 2 s here).
    env = {"STEP_RETRIES": str(retries), "WORKER_MAINTENANCE": "2"}
    start_worker(name="w-one", env=env)
    start_worker(name="w-two", env=env)
    wait_for_workers(conn, {"w-one", "w-two"})
    run, _ = service.submit(Submission("dog", [clip]), ALICE)

    # Wait for a chunk rendered by a step job (not the plan job's inline one), then kill its horse.
    deadline, victim = time.monotonic() + 60, None
    while victim is None:
        assert time.monotonic() < deadline, state.runs.step_states(run["id"])
        for chunk_id, s in state.runs.step_states(run["id"]).items():
            if chunk_id in CHUNKS and s["status"] == StepStatus.RUNNING and s["job_id"].startswith("step-"):
                victim = (chunk_id, s["worker"])
        time.sleep(0.05)
    time.sleep(0.3)
    chunk_id, name = victim
    worker = next(w for w in Worker.all(connection=conn) if w.name == name)
    kill_every_child(worker.pid)

    first = wait_for_run(state, run["id"])
    if retries:  # retried at once (on the other worker when it is free): the run completes
        assert first["status"] == RunStatus.COMPLETED, first.get("error")
        states = state.runs.step_states(run["id"])
        attempts = states[chunk_id]["attempts"]
        assert [a["outcome"] for a in attempts] == [StepStatus.FAILED, StepStatus.COMPLETED], attempts
        assert all(len(states[c]["attempts"]) == 1 for c in CHUNKS if c != chunk_id), states
        assert frames_of(store.path_for(first["output_hash"])) == 12 * 25
        return
    assert first["status"] == RunStatus.FAILED and chunk_id in first["error"], first.get("error")
    states = state.runs.step_states(run["id"])
    assert states[chunk_id]["status"] == StepStatus.FAILED
    kept = [c for c in CHUNKS if c != chunk_id]
    assert all(states[c]["status"] == StepStatus.COMPLETED for c in kept), states
    assert states["dog"]["status"] == StepStatus.SKIPPED
    misses = state.cache.stats().get("cache_misses")

    # Re-running renders only the chunk that was killed, then the join.
    service.rerun(run["id"], ALICE)
    second = wait_for_run(state, run["id"])
    assert second["status"] == RunStatus.COMPLETED, second.get("error")
    states = state.runs.step_states(run["id"])
    assert states[chunk_id]["status"] == StepStatus.COMPLETED
    assert all(states[c]["status"] == StepStatus.CACHED for c in kept), states
    assert state.cache.stats().get("cache_misses") == misses + 2  # that chunk and the join
    assert frames_of(store.path_for(second["output_hash"])) == 12 * 25


def test_a_sweep_keeps_a_chunk_stored_again_and_deletes_a_removed_ones_copy(state, store, tmp_path):
    """A forced re-run renders a chunk to the same bytes as one an earlier join removed, so its
    digest is still listed as removed until the new copy is stored and `discard`ed; another
    worker's sweep in between must not delete the new copy (bench_chunks' second round failed
    'No such file' when one did). A copy whose index entry the join removed still goes."""
    from types import SimpleNamespace

    from l1web.jobs import chunked

    ctx = SimpleNamespace(state=state, store=store)  # what sweep reads of a worker's clients
    again = tmp_path / "again.bin"
    again.write_bytes(b"a chunk rendered again, the same bytes as before")
    stored = store.put_file(again, source="chunk:run-2")  # as _render stores a chunk
    state.removed_chunks.add([stored])  # listed by the earlier run's join, not yet discarded
    old = tmp_path / "old.bin"
    old.write_bytes(b"a chunk another host joined and removed")
    removed = store.put_file(old, source="chunk:run-1")
    store.delete(removed)  # the join: index entry and file gone there ...
    store.location(removed).parent.mkdir(parents=True, exist_ok=True)
    store.location(removed).write_bytes(b"a chunk another host joined and removed")  # ... a copy left here
    state.removed_chunks.add([removed])

    assert chunked.sweep(ctx) == 1
    assert store.location(stored).read_bytes() == b"a chunk rendered again, the same bytes as before"
    assert state.cache.get(stored) is not None
    assert not store.location(removed).exists()
    assert chunked.sweep(ctx) == 0  # nothing left to delete, and nothing locked for it
