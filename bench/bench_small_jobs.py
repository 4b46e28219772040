"""Small jobs at the speed of their pixels (issue 19): fresh inverts through the HTTP API.

Starts its own redis-server, the development L1 (for a real Bearer token), the real web app
(`app.py`, waitress) with its default limits and 2 real worker processes (`worker.py`), then
measures, each beside a baseline from the same run:

- a fresh invert of a 1920×1080 and of a 451×300 PNG (photo-like pixels, a new image each
  time so nothing is reused), `POST /runs` → the run completed, p50 ÷ the same decode + invert
  + encode done in this process with the same code and settings (goals ≤ 1.25 and ≤ 1.5);
- the fixed per-job overhead, submit → done minus the in-process work, p50 (goal ≤ 10 ms);
- 50 fresh 451×300 jobs submitted at once, wall time until all are done ÷ (50 × in-process
  time ÷ 2 workers) (goal ≤ 1.5), the in-process time taken on those 50 images right before,
  the median of 3 such bursts; and how many submissions were refused (goal 0);
- the queue's own floor beside both (`rawjob.render`, the same render, as plain RQ jobs on the
  same 2 workers: no HTTP, no run, plan or store): one job's enqueue → end minus in-process, and
  the same 50 renders enqueued at once, wall ÷ the same ideal;
- `POST /cache/upload` of a small file (a fresh ~1.5 MB photo PNG each time, the kind of file a
  small job starts from), p50 ÷ writing + fsync + SHA3 of the same bytes in this process.

"Done" is when the client sees the run completed. A single job is submitted with `Prefer: wait`
(RFC 7240), as `render.py --sync` does: the `POST /runs` itself is answered when the run has ended;
the 50 jobs of the burst are submitted first and then waited for with `GET /runs/<id>?wait=` on a
kept-alive connection (the server answers when the run's status changes). The figure is the run's own
`finished` stamp minus the moment the client started sending `POST /runs` (same clock, same
machine), so the client's own reading does not inflate it; the client's own time is reported
beside it for the 50-job burst.

`python bench/bench_small_jobs.py` runs it alone; `BENCH_SMALL_ROUNDS` changes the rounds.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rawjob  # noqa: E402
from images import photo  # noqa: E402

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import free_port, python_process, start_redis, stop_process, wait_for  # noqa: E402
from l1web.jobs import queues  # noqa: E402

#: Fresh jobs per size (each a new image); the first `WARMUP` are dropped.
ROUNDS = int(os.environ.get("BENCH_SMALL_ROUNDS", "15"))
WARMUP = 2
#: Jobs in the burst, the workers serving it, and the bursts measured (the median is shown).
BURST, WORKERS, BURST_ROUNDS = 50, 2, 3
#: Seconds the server may hold a `GET /runs/<id>?wait=` until the run's status changes (the
#: client hears of the end at once), and between the client's polls when the server did not wait.
WAIT, POLL = 10, 0.005
#: Size of the uploaded PNGs (about 1.5 MB, the issue's example) and uploads measured.
UPLOAD_SIZE, UPLOADS = (1000, 750), 30
#: Image sizes (width, height).
BIG, SMALL = (1920, 1080), (451, 300)
#: Goals from the issue.
BIG_GOAL, SMALL_GOAL, OVERHEAD_GOAL_MS, BURST_GOAL = 1.25, 1.5, 10, 1.5


def png_bytes(size: tuple[int, int], seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(size, seed)).save(buf, "PNG")
    return buf.getvalue()


class Bench:
    def __init__(self, work: Path, extra_env: dict[str, str] | None = None) -> None:
        self.work = work
        self.redis = start_redis(work / "redis", free_port())
        self.port = free_port()
        self.l1_url = f"http://127.0.0.1:{self.port}"
        self.l2 = LiveL2(work / "devl2", l1_urls=(self.l1_url,))
        # Default limits: the burst must pass RUN_RATE_LIMIT as shipped.
        self.env = {
            "REDIS_URL": f"{self.redis.url}/5", "CACHE_DIR": str(work / "cache"), "DATA_DIR": str(work / "data"),
            "PORT": str(self.port), "L1_PUBLIC_URL": self.l1_url, "L2_SERVER": self.l2.url,
            "SECRET_KEY": "bench", **(extra_env or {}),
        }
        self.workers: list = []
        self.web = python_process(["app.py"], self.env, log=work / "web.log")
        wait_for(self._web_up, what="the web server", timeout=30)
        self.token = self.l2.mint("bench", self.l1_url)
        self.http = self.connect()
        self.seed = 0
        self.raw: Any = None  # RQ's queue for the raw-job baselines (`raw_queue`)

    def close(self) -> None:
        self.http.close()
        for proc in self.workers:
            stop_process(proc)
        stop_process(self.web)
        self.l2.stop()
        self.redis.stop()

    def _web_up(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def start_workers(self, count: int) -> None:
        import redis
        from rq import Worker

        for index in range(count):
            self.workers.append(python_process(["worker.py", "--name", f"small-{index}-{time.monotonic_ns()}"],
                                               self.env, log=self.work / f"worker-{index}.log"))
        rq = redis.Redis.from_url(self.env["REDIS_URL"])
        wait_for(lambda: len(Worker.all(connection=rq)) == count, what=f"{count} workers", timeout=60)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, *, content_type: str = "application/json",
                conn: http.client.HTTPConnection | None = None, prefer: str = "") -> tuple[int, dict, dict]:
        conn = conn or self.http
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if prefer:
            headers["Prefer"] = prefer
        if body is not None:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, dict(response.getheaders()), json.loads(payload) if payload else {}

    def upload(self, data: bytes) -> str:
        status, _, body = self.request("POST", "/cache/upload", data, content_type="application/octet-stream")
        if status not in (200, 201):
            raise RuntimeError(f"upload: {status} {body}")
        return body["digest"]

    def submit(self, digest: str, conn: http.client.HTTPConnection | None = None, *,
               wait: int = 0) -> tuple[int, dict]:
        """`POST /runs`; with `wait`, answered once the run has ended (at most `wait` s: `Prefer: wait`)."""
        status, _, body = self.request("POST", "/runs", json.dumps({"recipe": "invert", "inputs": [digest]}).encode(),
                                       conn=conn, prefer=f"wait={wait}" if wait else "")
        return status, body

    def wait(self, run_id: str, conn: http.client.HTTPConnection | None = None, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, headers, run = self.request("GET", f"/runs/{run_id}?wait={WAIT:g}", conn=conn)
            if status != 200:
                raise RuntimeError(f"GET /runs/{run_id[:12]}: {status} {run}")
            if run["status"] == "completed":
                return run
            if run["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"run {run_id[:12]} {run['status']}: {run.get('error')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id[:12]} still {run['status']} after {timeout} s")
            if headers.get("L1-Waited") != "1":
                time.sleep(POLL)

    def fresh(self, size: tuple[int, int]) -> tuple[str, Path]:
        """A new image (never seen before), uploaded; its digest and a local copy."""
        self.seed += 1
        data = png_bytes(size, self.seed)
        path = self.work / f"in-{self.seed}.png"
        path.write_bytes(data)
        return self.upload(data), path


def in_process_seconds(src: Path, dst: Path) -> float:
    """Decode + invert + encode, by the worker's decoder and effect and Pillow's encoder with the
    worker's settings (`rawjob.render`, which the raw RQ baselines run on the workers)."""
    return rawjob.render(src, dst)


def fresh_jobs(bench: Bench, size: tuple[int, int]) -> tuple[float, float, float]:
    """p50 of submit → done, of in-process, and of their difference per round (one of each per round)."""
    served, local = [], []
    for index in range(ROUNDS + WARMUP):
        digest, path = bench.fresh(size)
        local_time = in_process_seconds(path, bench.work / "out.png")
        started = time.time()
        status, run = bench.submit(digest, wait=WAIT)
        if status != 201:
            raise RuntimeError(f"POST /runs: {status} {run}")
        done = run if run["status"] == "completed" else bench.wait(run["id"])
        if index >= WARMUP:
            served.append(done["finished"] - started)
            local.append(local_time)
    overhead = [a - b for a, b in zip(served, local, strict=True)]
    return statistics.median(served), statistics.median(local), statistics.median(overhead)


def burst(bench: Bench, images: list[tuple[str, Path]]) -> dict:
    """The `BURST` uploaded `images` submitted at once (10 client threads) as fresh small jobs;
    wall until all are done (the runs' own `finished` stamps), beside the same renders' ideal
    (their in-process time, p50 over these very images, × `BURST` ÷ `WORKERS`)."""
    ideal = statistics.median(in_process_seconds(path, bench.work / "out.png") for _, path in images) \
        * len(images) / WORKERS
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()
    todo = [digest for digest, _ in images]

    def client() -> None:
        conn = bench.connect()
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    digest = todo.pop()
                outcome = bench.submit(digest, conn)
                with lock:
                    results.append(outcome)
        finally:
            conn.close()

    started_wall = time.time()
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = sum(1 for status, _ in results if status == 429)
    accepted = [run["id"] for status, run in results if status == 201]
    finished = [bench.wait(run_id)["finished"] for run_id in accepted]
    return {"wall": max(finished) - started_wall if finished else float("nan"), "ideal": ideal,
            "refused": refused, "seen": time.monotonic() - started}


def raw_queue(bench: Bench):
    """RQ's queue that the bench's workers serve, for plain RQ jobs beside L1's runs: made once
    (a new client's first enqueue connects and asks the server's version: not the queue's cost)."""
    import redis

    if bench.raw is None:
        bench.raw = queues.queue(redis.Redis.from_url(bench.env["REDIS_URL"]), "default")
        bench.raw.enqueue("os.getpid", result_ttl=60).latest_result(timeout=WAIT)
    return bench.raw


def raw_jobs(bench: Bench, paths: list[Path]) -> float:
    """`rawjob.render` of each of `paths` as a plain RQ job on the same workers, enqueued at once
    (no HTTP, no run, no plan, no store: RQ as L1's workers run it); wall from the first enqueue
    to the last job's end (RQ's `ended_at`). Each job's end is waited for blocking on its result
    stream (RQ's `latest_result(timeout=…)`), as L1's client waits with `?wait=`."""
    from rq.job import Job

    queue = raw_queue(bench)
    started = time.time()
    jobs = [queue.enqueue("bench.rawjob.render", str(path), str(bench.work / f"raw-{index}.png"), result_ttl=600)
            for index, path in enumerate(paths)]
    for job in jobs:
        if job.latest_result(timeout=WAIT) is None:
            raise RuntimeError(f"raw RQ job {job.id} did not end within {WAIT} s")
    ended = Job.fetch_many([job.id for job in jobs], connection=queue.connection, serializer=queue.serializer)
    if not all(job is not None and job.is_finished and job.ended_at for job in ended):
        raise RuntimeError("a raw RQ job failed")
    return max(job.ended_at.timestamp() for job in ended if job is not None and job.ended_at) - started


def raw_single(bench: Bench, rounds: int) -> float:
    """p50 of one raw RQ job's enqueue → end minus the same render in-process, a new image each
    round: the queue's own fixed cost per job (L1's overhead row stands beside it)."""
    overheads = []
    for index in range(rounds + WARMUP):
        _digest, path = bench.fresh(SMALL)
        local = in_process_seconds(path, bench.work / "out.png")
        if index >= WARMUP:
            overheads.append(raw_jobs(bench, [path]) - local)
    return statistics.median(overheads)


def burst_rows(bench: Bench) -> list[dict]:
    """`BURST_ROUNDS` rounds of: `BURST` new images, their in-process baseline, L1's burst of them,
    then the same renders as raw RQ jobs on the same workers; the median round of each."""
    l1, raw, refused = [], [], 0
    for _ in range(BURST_ROUNDS):
        images = [bench.fresh(SMALL) for _ in range(BURST)]
        got = burst(bench, images)
        l1.append(got)
        refused += got["refused"]
        raw.append({"wall": raw_jobs(bench, [path for _, path in images]), "ideal": got["ideal"]})
    mid = sorted(l1, key=lambda r: r["wall"] / r["ideal"])[len(l1) // 2]
    raw_mid = sorted(raw, key=lambda r: r["wall"] / r["ideal"])[len(raw) // 2]
    return [
        {"benchmark": f"{BURST} fresh 451x300 inverts at once, {WORKERS} workers: wall vs {BURST} x in-process / "
                      f"{WORKERS} (median of {BURST_ROUNDS} bursts; client saw all done at {mid['seen']:.2f} s)",
         "l1": mid["wall"], "baseline": mid["ideal"], "ratio": mid["wall"] / mid["ideal"], "goal": f"<= {BURST_GOAL}",
         "unit": "s"},
        {"benchmark": f"  the queue's floor: the same {BURST} renders as raw RQ jobs at once, same workers, "
                      f"vs the same ideal (median of {BURST_ROUNDS})",
         "l1": raw_mid["wall"], "baseline": raw_mid["ideal"], "ratio": raw_mid["wall"] / raw_mid["ideal"],
         "goal": "", "unit": "s"},
        {"benchmark": f"{BURST} submissions at once: refused (429) at the default RUN_RATE_LIMIT "
                      f"(all {BURST_ROUNDS} bursts)",
         "l1": refused, "baseline": 0, "ratio": None, "goal": "0", "unit": "refusals"},
    ]


def small_upload(bench: Bench) -> list[dict]:
    """`POST /cache/upload` of a small file vs writing + fsync + SHA3 of the same bytes here."""
    served, local, sizes = [], [], []
    for index in range(UPLOADS + WARMUP):
        buf = io.BytesIO()  # a new picture each time: every upload is a new item
        Image.fromarray(photo(UPLOAD_SIZE, 10_000 + index)).save(buf, "PNG", compress_level=1)
        data = buf.getvalue()
        sizes.append(len(data))
        started = time.perf_counter()
        bench.upload(data)
        elapsed = time.perf_counter() - started
        target = bench.work / "cache" / "tmp" / "bench-baseline"
        started = time.perf_counter()
        with open(target, "wb", buffering=0) as handle:
            handle.write(data)
            os.fsync(handle.fileno())
        hashlib.sha3_256(data).hexdigest()
        local_elapsed = time.perf_counter() - started
        target.unlink()
        if index >= WARMUP:
            served.append(elapsed * 1000)
            local.append(local_elapsed * 1000)
    p50, base = statistics.median(served), statistics.median(local)
    return [{"benchmark": f"POST /cache/upload {statistics.median(sizes) / 1e6:.2f} MB PNG p50 vs write+fsync+SHA3 "
                          "in-process",
             "l1": p50, "baseline": base, "ratio": p50 / base, "goal": "", "unit": "ms"}]


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-small-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start_workers(WORKERS)
            out: list[dict] = []
            big_served, big_local, _ = fresh_jobs(bench, BIG)
            small_served, small_local, small_overhead = fresh_jobs(bench, SMALL)
            out.append({"benchmark": "fresh invert 1920x1080 PNG via HTTP, submit -> done p50 vs in-process",
                        "l1": big_served * 1000, "baseline": big_local * 1000, "ratio": big_served / big_local,
                        "goal": f"<= {BIG_GOAL}", "unit": "ms"})
            out.append({"benchmark": "fresh invert 451x300 PNG via HTTP, submit -> done p50 vs in-process",
                        "l1": small_served * 1000, "baseline": small_local * 1000,
                        "ratio": small_served / small_local, "goal": f"<= {SMALL_GOAL}", "unit": "ms"})
            out.append({"benchmark": "fixed per-job overhead (451x300: submit -> done minus in-process) p50",
                        "l1": small_overhead * 1000, "baseline": small_local * 1000, "ratio": None,
                        "goal": f"<= {OVERHEAD_GOAL_MS}", "unit": "ms"})
            out.append({"benchmark": "  the queue's floor: a raw RQ job of the same render on the same workers, "
                                     "enqueue -> end minus in-process p50",
                        "l1": raw_single(bench, ROUNDS) * 1000, "baseline": small_local * 1000, "ratio": None,
                        "goal": "", "unit": "ms"})
            out += burst_rows(bench)
            out += small_upload(bench)
            return out
        finally:
            bench.close()


if __name__ == "__main__":
    for row in rows():
        print(row)
