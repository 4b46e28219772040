"""Resumable (tus) uploads through `render.py` to the real server, and `POST /cache/missing`.

Starts its own redis-server, the development L2 (for a real Bearer token) and the web app under
waitress (`waitress_options`, as `python app.py` serves it) in a separate process. Then:

- 1 GiB through `render.py`'s resumable upload (`resumable_upload`: tus PATCHes of
  `UPLOAD_CHUNK`, pipelined on one connection) ÷ raw `hashlib.sha3_256` of the same bytes read
  from the same file in the same run (goal ≥ 0.85). The client already knows the hash here, as
  `render.py` does after hashing locally; the whole `render.py upload FILE` command (hash locally,
  ask `/cache/missing`, upload) is a row of its own, against the same baseline.
- the web process's peak RSS during that upload over its idle RSS (goal ≤ idle + 64 MiB);
- the chunk size: 256 MiB uploaded with 1, 4, 8 and 16 MiB PATCHes (how `UPLOAD_CHUNK` was chosen);
- `POST /cache/missing` with 1,000 hashes: p50 over 200 calls (goal ≤ 10 ms), beside the p50 of
  `GET /healthz` (an HTTP round trip doing nothing) from the same client.

Hashing uses one core (hashlib's SHA3 is single-threaded), so the ratio does not measure core
count; on this shared 2-core machine client, server and baseline compete for the same cores.
`python bench/bench_resumable.py` runs it alone; `BENCH_UPLOAD_MB` changes the size (default 1024),
`BENCH_REPEAT` measures the upload that many times (each beside its own baseline),
`BENCH_RESUMABLE_PARTS` picks parts (upload, command, chunks, missing) and `BENCH_WAITRESS` (JSON)
sets waitress options over `waitress_options`, to measure one (`{"channel_request_lookahead": 0}`
is waitress's default; `{"memory_bodies": false}` leaves PATCH bodies to waitress's temp files).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from served import CHUNK, RssPeak, bare_receive, hash_baseline, make_file, rss_row, served, throughput_row  # noqa: E402

import render  # noqa: E402

SIZE_MB = int(os.environ.get("BENCH_UPLOAD_MB", "1024"))
#: Size of each upload in the chunk-size sweep, and the sizes tried.
SWEEP_MB, SWEEP_CHUNKS_MB = min(256, SIZE_MB), (1, 4, 8, 16)
#: Calls of /cache/missing (and of the baseline) whose median is reported.
MISSING_CALLS, MISSING_HASHES = 200, 1000
THROUGHPUT_GOAL, RSS_GOAL_MIB, MISSING_GOAL_MS = 0.85, 64, 10
#: Which parts run (`BENCH_RESUMABLE_PARTS`, comma-separated; all by default).
PARTS = ("upload", "command", "chunks", "missing")
#: Times the 1 GiB upload is measured, each beside its own baseline (`BENCH_REPEAT`).
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
#: Waitress options over `waitress_options` (`BENCH_WAITRESS`, JSON), to measure a knob.
WAITRESS = json.loads(os.environ.get("BENCH_WAITRESS") or "{}")


def rows() -> list[dict]:
    parts = [p for p in os.environ.get("BENCH_RESUMABLE_PARTS", ",".join(PARTS)).split(",") if p]
    with tempfile.TemporaryDirectory(prefix="l1-bench-resumable-") as tmp:
        work = Path(tmp)
        source = work / "upload.bin"
        make_file(source, SIZE_MB)
        os.environ["L1_CONFIG"] = str(work / "client" / "config.json")  # render.py's resume notes go here
        env = {"MAX_UPLOAD_BYTES": str(SIZE_MB * CHUNK + CHUNK), "UPLOAD_INFLIGHT_BYTES": str(4 * SIZE_MB * CHUNK)}
        with served(work, env, WAITRESS) as web:
            return measure(work, source, web.url, web.token, web.pid, parts)


def measure(work: Path, source: Path, url: str, token: str, pid: int, parts: list[str]) -> list[dict]:
    session = render.session_for(token)
    hash_baseline(source)  # warm the page cache so both sides read from memory
    digest = hash_baseline(source)[1]
    out: list[dict] = []
    for _ in range(REPEAT if "upload" in parts else 0):
        out += upload_rows(session, url, source, digest, pid)
    if "command" in parts:
        out.append(command_row(url, token, source, digest, session))
    if "chunks" in parts:
        out += chunk_rows(work, session, url)
    if "missing" in parts:
        out.append(missing_row(session, url))
    return out


def upload_rows(session: requests.Session, url: str, source: Path, digest: str, pid: int) -> list[dict]:
    """The 1 GiB resumable upload through render.py (hash known), and the web RSS meanwhile; the
    baseline is measured just before, so both see the same load on the shared machine."""
    size_mib = source.stat().st_size / CHUNK
    cpu_started = time.process_time()
    base_seconds = hash_baseline(source)[0]
    base_cpu = time.process_time() - cpu_started
    time.sleep(0.5)
    web = psutil.Process(pid)
    idle = web.memory_info().rss
    web_cpu = sum(web.cpu_times()[:2])
    with RssPeak(pid) as rss:
        started = time.perf_counter()
        render.resumable_upload(session, url, source, digest, show=False)
        seconds = time.perf_counter() - started
    web_cpu = sum(web.cpu_times()[:2]) - web_cpu
    out = [throughput_row(f"resumable upload {size_mib:.0f} MiB via render.py (tus, "
                          f"{render.UPLOAD_CHUNK // CHUNK} MiB PATCHes pipelined): MiB/s vs raw sha3_256",
                          size_mib, seconds, base_seconds, f">= {THROUGHPUT_GOAL}"),
           rss_row(f"resumable upload {size_mib:.0f} MiB: web peak RSS over idle", rss.peak, idle, RSS_GOAL_MIB),
           # CPU time hardly depends on what else the machine runs: what the server spends beyond
           # hashing (receiving, buffering, writing) shows here even when wall times are noisy.
           {"benchmark": f"resumable upload {size_mib:.0f} MiB: web process CPU s (user+sys) vs sha3_256's CPU s",
            "l1": web_cpu, "baseline": base_cpu, "ratio": web_cpu / base_cpu, "goal": "", "unit": "s"}]
    delete(session, url, digest)
    # What any server must do with these bytes on this machine, measured right after: receive
    # them from another process, hash and write them (`bare_receive`). Raw hashing of a cached
    # file has a core to itself; an upload shares both cores with its sender and its writes.
    bare_seconds, bare_digest = bare_receive(source, source.with_suffix(".bare"))
    if bare_digest != digest:
        raise RuntimeError(f"the bare receiver hashed {bare_digest}, not {digest}")
    out += [throughput_row(f"bare receiver, {size_mib:.0f} MiB (loopback TCP from another process, recv_into, "
                           "sha3_256 in a thread, write, one fsync; no HTTP): MiB/s vs raw sha3_256",
                           size_mib, bare_seconds, base_seconds),
            {"benchmark": f"resumable upload {size_mib:.0f} MiB via render.py vs the bare receiver",
             "l1": size_mib / seconds, "baseline": size_mib / bare_seconds, "ratio": bare_seconds / seconds,
             "goal": "", "unit": "MiB/s"}]
    return out


def command_row(url: str, token: str, source: Path, digest: str, session: requests.Session) -> dict:
    """`render.py upload FILE` as a user runs it: hash here, ask /cache/missing, upload."""
    hash_baseline(source)
    base_seconds = hash_baseline(source)[0]
    size_mib = source.stat().st_size / CHUNK
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "render.py"), "upload", str(source), "--server", url,
                    "--token", token], check=True, capture_output=True, env=os.environ.copy())
    seconds = time.perf_counter() - started
    delete(session, url, digest)
    return throughput_row(f"'render.py upload' {size_mib:.0f} MiB, whole command (hash here + /cache/missing + "
                          "upload): MiB/s vs raw sha3_256", size_mib, seconds, base_seconds)


def chunk_rows(work: Path, session: requests.Session, url: str) -> list[dict]:
    """SWEEP_MB uploaded in PATCHes of each of SWEEP_CHUNKS_MB (how UPLOAD_CHUNK was chosen)."""
    sweep = work / "sweep.bin"
    make_file(sweep, SWEEP_MB)
    sweep_digest = hash_baseline(sweep)[1]
    kept, out = render.UPLOAD_CHUNK, []
    try:
        for chunk_mb in SWEEP_CHUNKS_MB:
            sweep_base = hash_baseline(sweep)[0]
            render.UPLOAD_CHUNK = chunk_mb * CHUNK
            started = time.perf_counter()
            render.resumable_upload(session, url, sweep, sweep_digest, show=False)
            seconds = time.perf_counter() - started
            delete(session, url, sweep_digest)
            out.append(throughput_row(f"resumable upload {SWEEP_MB} MiB in {chunk_mb} MiB PATCHes: MiB/s vs raw "
                                      "sha3_256", SWEEP_MB, seconds, sweep_base))
    finally:
        render.UPLOAD_CHUNK = kept
    return out


def missing_row(session: requests.Session, url: str) -> dict:
    """p50 of POST /cache/missing with 1,000 hashes (a tenth of them stored), beside GET /healthz."""
    stored = [session.post(f"{url}/cache/upload", data=os.urandom(64),
                           headers={"Content-Type": "application/octet-stream"}).json()["digest"]
              for _ in range(MISSING_HASHES // 10)]
    hashes = stored + [hashlib.sha3_256(os.urandom(16)).hexdigest() for _ in range(MISSING_HASHES - len(stored))]
    timings, baseline = [], []
    for _ in range(MISSING_CALLS):
        started = time.perf_counter()
        answer = session.post(f"{url}/cache/missing", json={"hashes": hashes})
        timings.append(time.perf_counter() - started)
        if answer.status_code != 200 or len(answer.json()["missing"]) != MISSING_HASHES - len(stored):
            raise RuntimeError(f"/cache/missing answered {answer.status_code} {answer.text[:200]}")
        started = time.perf_counter()
        session.get(f"{url}/healthz")
        baseline.append(time.perf_counter() - started)
    p50, base = statistics.median(timings) * 1000, statistics.median(baseline) * 1000
    return {"benchmark": f"POST /cache/missing with {MISSING_HASHES} hashes: p50 (baseline: GET /healthz p50)",
            "l1": p50, "baseline": base, "ratio": p50 / base, "goal": f"<= {MISSING_GOAL_MS} ms", "unit": "ms"}


def delete(session: requests.Session, url: str, digest: str) -> None:
    answer = session.delete(f"{url}/cache/{digest}")
    if answer.status_code not in (200, 204):
        raise RuntimeError(f"could not delete {digest}: {answer.status_code} {answer.text[:200]}")


if __name__ == "__main__":
    for item in rows():
        print(item)
