"""Memory of a long render: a 10-minute 1280×720 clip through `dog`, chunked on 2 real workers.

Each worker's process tree is sampled while the run renders, with pages the processes share
counted once (PSS: the horse is a fork of the worker). The worker — the RQ worker process and
its work-horse, where planning, the audio analysis, the numpy frames and the join run — must stay
≤ 300 MiB; with the ffmpeg decoder and x264 encoder it runs (whose memory is set by the frame
size, ~160 MiB at 720p, not by the length) the whole tree must stay ≤ 450 MiB.

The clip is 10 minutes long but has 2 frames a second (1,200 frames): what could
grow with length (the MP4 index, the sound, the plan, the join's concat list over 10 chunks)
grows with minutes and frames as a real clip's would, while frames are held a few at a time
whatever the rate; at 25 fps the same render would take ~25 minutes on this shared 2-core machine.
"""

from __future__ import annotations

import subprocess
import threading
import time

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
#: Most memory one worker (RQ worker + work-horse) may use, in MiB (the issue's bound), and its
#: whole tree with the ffmpeg processes.
RSS_LIMIT_MIB, TREE_LIMIT_MIB = 300, 450


@pytest.fixture()
def settings(settings):
    return settings.with_changes(chunk_seconds=60.0, chunk_min_seconds=30.0)


@pytest.fixture()
def worker_env(worker_env):
    return {**worker_env, "CHUNK_SECONDS": "60", "CHUNK_MIN_SECONDS": "30"}


def tree_rss(pid: int, roles: dict[str, int]) -> tuple[int, int]:
    """Resident bytes of a process and all its descendants (0 for those gone meanwhile).

    Pages shared between them (the work-horse is a fork of the worker; the ffmpeg processes map
    the same libraries) are counted once, by proportional set size (PSS); `roles` keeps each
    process kind's own peak RSS for the message. (Python processes, whole tree), in bytes.
    """
    total = python = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += info.pss
        role = "ffmpeg" if "ffmpeg" in name else ("worker" if proc.pid == pid else "work-horse")
        python += 0 if role == "ffmpeg" else info.pss
        roles[role] = max(roles.get(role, 0), info.rss)
    return python, total


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
    trees = {w.pid: 0 for w in workers}
    roles: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            for pid, peak in list(peaks.items()):
                python, tree = tree_rss(pid, roles)
                peaks[pid], trees[pid] = max(peak, python), max(trees[pid], tree)

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
    mib = [round(peak / 2**20) for peak in peaks.values()]
    tree = [round(peak / 2**20) for peak in trees.values()]
    each = {role: round(peak / 2**20) for role, peak in roles.items()}
    report = f"peak PSS per worker (MiB): {mib}, with ffmpeg: {tree}; peak RSS by process kind: {each}"
    print(report)
    assert all(peak > 50 for peak in mib) and "ffmpeg" in each, report  # the sampler saw them working
    assert max(mib) <= RSS_LIMIT_MIB and max(tree) <= TREE_LIMIT_MIB, report
