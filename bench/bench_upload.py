"""Upload throughput and memory: a 1 GiB file through the real HTTP server (waitress).

Starts its own redis-server, the development L2 (for a real Bearer token) and the web app under
waitress in a separate process, then uploads a generated file streamed from disk, once as a raw
body and once as multipart/form-data. Throughput is compared with `hashlib.sha3_256` over the
same bytes read from the same file in the same run (goal ≥ 0.85); the web process's peak RSS
during the upload, polled with psutil, is compared with its idle RSS (goal ≤ idle + 64 MiB).

`python bench/bench_upload.py` runs it alone; `BENCH_UPLOAD_MB` changes the size (default 1024).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import free_port, python_process, start_redis, stop_process, wait_for  # noqa: E402

#: Size of the uploaded file in MiB (1 GiB as the issue asks).
SIZE_MB = int(os.environ.get("BENCH_UPLOAD_MB", "1024"))
#: Bytes per client send and per baseline read (1 MiB).
CHUNK = 1024 * 1024
#: Seconds between RSS samples of the web process.
RSS_POLL = 0.01
#: Goals from the issue.
THROUGHPUT_GOAL, RSS_GOAL_MIB = 0.85, 64
#: Bytes waitress reads from the socket per call. Its default (8 KiB) caps uploads near
#: 50 MiB/s on this machine; 1 MiB lets it keep up with hashing. app.py should use the same.
RECV_BYTES = int(os.environ.get("BENCH_RECV_BYTES", str(1024 * 1024)))
#: Multipart boundary used by the client.
BOUNDARY = "l1benchboundary7d1f0c2a"

# The web process: the real app factory under waitress, with a body limit above the file size.
SERVER = """
import sys, time
from waitress import serve
from l1web.web import create_app
from l1web.settings import Settings
settings = Settings.from_env(dotenv=False)
app = create_app(settings)

def timed(environ, start_response):
    # waitress hands the app a fully received body; this header says how long the app took.
    started = time.perf_counter()
    def start(status, headers, exc_info=None):
        headers.append(("X-App-Seconds", f"{time.perf_counter() - started:.4f}"))
        return start_response(status, headers, exc_info)
    return app(environ, start)

serve(timed, host="127.0.0.1", port=settings.port, threads=4, recv_bytes=int(sys.argv[1]),
      max_request_body_size=settings.max_upload_bytes + 1024 * 1024, ident="L1-bench")
"""


def make_file(path: Path, size_mb: int) -> None:
    block = os.urandom(16 * CHUNK)
    with open(path, "wb") as handle:
        for _ in range(size_mb // 16):
            handle.write(block)
        handle.write(block[: (size_mb % 16) * CHUNK])


def hash_baseline(path: Path) -> tuple[float, str]:
    hasher = hashlib.sha3_256()
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return time.perf_counter() - started, hasher.hexdigest()


class RssPeak:
    """Polls a process's RSS in a thread; `peak` is the highest value seen while running."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(RSS_POLL)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send(port: int, token: str, path: Path, *, multipart: bool) -> tuple[float, dict]:
    """POST the file to /cache/upload, streamed from disk; seconds from first byte to answer."""
    size = path.stat().st_size
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() if multipart else b""
    tail = f"\r\n--{BOUNDARY}--\r\n".encode() if multipart else b""
    content_type = f"multipart/form-data; boundary={BOUNDARY}" if multipart else "application/octet-stream"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.putrequest("POST", "/cache/upload")
    for name, value in (("Authorization", f"Bearer {token}"), ("Content-Type", content_type),
                        ("Content-Length", str(len(head) + size + len(tail))), ("Accept", "application/json")):
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(head)
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            conn.sock.sendall(chunk)
    conn.send(tail)
    response = conn.getresponse()
    body = json.loads(response.read())
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status not in (200, 201):
        raise RuntimeError(f"upload failed: {response.status} {body}")
    body["app_seconds"] = float(response.getheader("X-App-Seconds", "nan"))
    return elapsed, body


def delete(port: int, token: str, digest: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("DELETE", f"/cache/{digest}", headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "application/json"})
    conn.getresponse().read()
    conn.close()


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-upload-") as tmp:
        work = Path(tmp)
        source = work / "upload.bin"
        make_file(source, SIZE_MB)
        redis = start_redis(work / "redis", free_port())
        port = free_port()
        l1_url = f"http://127.0.0.1:{port}"
        l2 = LiveL2(work / "devl2", l1_urls=(l1_url,))
        env = {
            "REDIS_URL": f"{redis.url}/5", "CACHE_DIR": str(work / "cache"), "DATA_DIR": str(work / "data"),
            "PORT": str(port), "L1_PUBLIC_URL": l1_url, "L2_SERVER": l2.url, "SECRET_KEY": "bench",
            "MAX_UPLOAD_BYTES": str(SIZE_MB * CHUNK + CHUNK),
        }
        web = python_process(["-c", SERVER, str(RECV_BYTES)], env, log=work / "web.log")
        try:
            wait_for(lambda: http_ok(port), what="the web server", timeout=30)
            token = l2.mint("bench", l1_url)
            return measure(source, port, token, web.pid)
        finally:
            stop_process(web)
            l2.stop()
            redis.stop()


def measure(source: Path, port: int, token: str, pid: int) -> list[dict]:
    hash_baseline(source)  # warm the page cache so both sides read from memory
    base_seconds, digest = hash_baseline(source)
    size_mib = source.stat().st_size / CHUNK
    out: list[dict] = []
    for label, multipart in (("raw body", False), ("multipart", True)):
        time.sleep(0.5)
        idle = psutil.Process(pid).memory_info().rss
        with RssPeak(pid) as rss:
            seconds, body = send(port, token, source, multipart=multipart)
        if body["digest"] != digest:
            raise RuntimeError(f"server hashed {body['digest']}, expected {digest}")
        delete(port, token, digest)
        ratio = base_seconds / seconds
        out.append({"benchmark": f"upload {size_mib:.0f} MiB, {label}: MiB/s vs raw sha3_256",
                    "l1": size_mib / seconds, "baseline": size_mib / base_seconds, "ratio": ratio,
                    "goal": f">= {THROUGHPUT_GOAL}", "unit": "MiB/s"})
        app_seconds = body["app_seconds"]
        out.append({"benchmark": f"upload {size_mib:.0f} MiB, {label}: app part only (after waitress buffered it)",
                    "l1": size_mib / app_seconds, "baseline": size_mib / base_seconds,
                    "ratio": base_seconds / app_seconds, "goal": "", "unit": "MiB/s"})
        growth = (rss.peak - idle) / CHUNK
        out.append({"benchmark": f"upload {size_mib:.0f} MiB, {label}: web peak RSS over idle",
                    "l1": growth, "baseline": idle / CHUNK, "ratio": None,
                    "goal": f"<= {RSS_GOAL_MIB}", "unit": "MiB (baseline: idle RSS)"})
    return out


def http_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/", headers={"Accept": "application/json"})
        return conn.getresponse().status == 200
    finally:
        conn.close()


if __name__ == "__main__":
    for row in rows():
        print(row)
