"""Memory of a long render: a 10-minute 1280×720 clip through `dog`, chunked on 2 real workers.

Each worker's whole process tree — the RQ worker, its work-horse and the ffmpeg decoder and
encoder the horse runs — is sampled while the run renders; the sum of their resident sets must
stay ≤ 300 MiB. The clip is 10 minutes long but has 2 frames a second (1,200 frames): what could
grow with length (the MP4 index, the sound, the plan, the join's concat list over 10 chunks)
grows with minutes and frames as a real clip's would, while frames are held a few at a time
whatever the rate; at 25 fps the same render would take ~25 minutes on this shared 2-core machine.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from rq import Worker

from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.store import ContentStore
from l1web.users import User
from tests.test_chunks_workers import frames_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MINUTES, FPS = 10, 2
#: Most resident memory one worker's process tree may use, in MiB (the issue's bound).
RSS_LIMIT_MIB = 300


@pytest.fixture()
def settings(settings):
    return settings.with_changes(chunk_seconds=60.0, chunk_min_seconds=30.0)


@pytest.fixture()
def worker_env(worker_env):
    return {**worker_env, "CHUNK_SECONDS": "60", "CHUNK_MIN_SECONDS": "30"}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 for those gone meanwhile)."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_a_ten_minute_720p_clip_renders_in_bounded_memory(settings, state, start_worker, tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    seconds = MINUTES * 60
    clip = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(clip)], check=True)
    digest = store.put_file(clip, source="test", owner="alice")
    conn = connect(settings.redis_url, decode=False)
    workers = [start_worker(name="rss-a"), start_worker(name="rss-b")]
    deadline = time.monotonic() + 60
    while len(Worker.all(connection=conn)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    peaks = {w.pid: 0 for w in workers}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            for pid, peak in list(peaks.items()):
                peaks[pid] = max(peak, tree_rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run, _ = run_service(state, store, conn).submit(Submission("dog", [digest]), User("alice"))
        deadline = time.monotonic() + 540
        while RunStatus(state.runs.get(run["id"])["status"]).live:
            assert time.monotonic() < deadline, state.runs.step_states(run["id"])
            time.sleep(0.5)
    finally:
        done.set()
        sampler.join()
    run = state.runs.get(run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    states = state.runs.step_states(run["id"])
    assert sum(1 for sid in states if "~c" in sid) == 10
    assert all(s["status"] in (StepStatus.COMPLETED, StepStatus.CACHED) for s in states.values())
    assert frames_of(store.path_for(run["output_hash"])) == seconds * FPS
    mib = {pid: peak / 2**20 for pid, peak in peaks.items()}
    assert all(peak > 50 for peak in mib.values()), mib  # the sampler saw the workers working
    assert max(mib.values()) <= RSS_LIMIT_MIB, f"peak RSS per worker tree (MiB): {mib}"
    Path(tmp_path / "rss.txt").write_text(repr(mib))
    print(f"peak RSS per worker tree (MiB): { {k: round(v) for k, v in mib.items()} }")
