"""What the upload benchmarks share: the real web app in a process of its own, a generated file,
the raw `sha3_256` baseline over the same bytes, and the web process's peak RSS.

`served(...)` starts a redis-server, the development L2 (for a real Bearer token) and a Python
process running the given server code with the environment an L1 web app reads, and stops all
three afterwards; the web log's last lines go to stderr when the benchmark fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import free_port, python_process, start_redis, stop_process, wait_for  # noqa: E402

#: Bytes per client send and per baseline read (1 MiB).
CHUNK = 1024 * 1024
#: Seconds between RSS samples of the web process.
RSS_POLL = 0.01

#: The web process: the real app served as `python app.py` serves it (`waitress_options`, the
#: keep-alive server), with waitress options (JSON, argv[1]) over those; each answer carries
#: `X-App-Seconds`, the time the app took once waitress handed it the request. One option is not
#: waitress's: `"memory_bodies": false` leaves every body to waitress's own buffer (temp files),
#: as before `l1web/web/bodies.py`, to measure what holding PATCH bodies in memory changes.
SERVER = """
import json, sys, time
from l1web.settings import Settings
from l1web.web import bodies, create_app
from l1web.web.keepalive import create_server
from l1web.web.serving import waitress_options
settings = Settings.from_env(dotenv=False)
app = create_app(settings)
options = json.loads(sys.argv[1])
if not options.pop("memory_bodies", True):
    bodies.METHODS = frozenset()

def timed(environ, start_response):
    started = time.perf_counter()
    def start(status, headers, exc_info=None):
        headers.append(("X-App-Seconds", f"{time.perf_counter() - started:.4f}"))
        return start_response(status, headers, exc_info)
    return app(environ, start)

create_server(timed, **{**waitress_options(settings), **options}).run()
"""


@dataclass(frozen=True)
class Served:
    """A running web app: where it listens, a token for user `bench`, its pid and work folder."""

    url: str
    port: int
    token: str
    pid: int
    work: Path


@contextlib.contextmanager
def served(work: Path, env: dict[str, str], waitress: dict | None = None) -> Iterator[Served]:
    """Run SERVER as the web app (`env` over the usual settings, `waitress` over its options)
    until the block ends; it must answer GET / within a minute."""
    redis = start_redis(work / "redis", free_port())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    l2 = LiveL2(work / "devl2", l1_urls=(url,))
    settings = {
        "REDIS_URL": f"{redis.url}/5", "CACHE_DIR": str(work / "cache"), "DATA_DIR": str(work / "data"),
        "PORT": str(port), "L1_PUBLIC_URL": url, "L2_SERVER": l2.url, "SECRET_KEY": "bench", **env,
    }
    log = work / "web.log"
    web = python_process(["-c", SERVER, json.dumps(waitress or {})], settings, log=log)
    try:
        wait_for(lambda: http_ok(port), what="the web server", timeout=60)
        try:
            yield Served(url, port, l2.mint("bench", url), web.pid, work)
        except Exception:
            lines = [line for line in log.read_text().splitlines() if "l1web.access" not in line]
            print("\n".join(lines)[-3000:], file=sys.stderr)
            raise
    finally:
        stop_process(web)
        l2.stop()
        redis.stop()


def http_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/", headers={"Accept": "application/json"})
        return conn.getresponse().status == 200
    finally:
        conn.close()


def make_file(path: Path, size_mb: int) -> None:
    """`size_mb` MiB of random bytes (one random 16 MiB block repeated: SHA3 does not care)."""
    block = os.urandom(16 * CHUNK)
    with open(path, "wb") as handle:
        for _ in range(size_mb // 16):
            handle.write(block)
        handle.write(block[: (size_mb % 16) * CHUNK])


def hash_baseline(path: Path) -> tuple[float, str]:
    """Seconds raw `hashlib.sha3_256` takes over the file read in CHUNK pieces, and the digest."""
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


def throughput_row(name: str, mib: float, seconds: float, base_seconds: float, goal: str = "") -> dict:
    """A row of MiB/s beside the same-run sha3_256 baseline over the same bytes."""
    return {"benchmark": name, "l1": mib / seconds, "baseline": mib / base_seconds,
            "ratio": base_seconds / seconds, "goal": goal, "unit": "MiB/s"}


def rss_row(name: str, peak: int, idle: int, goal_mib: int) -> dict:
    return {"benchmark": name, "l1": (peak - idle) / CHUNK, "baseline": idle / CHUNK, "ratio": None,
            "goal": f"<= {goal_mib}", "unit": "MiB (baseline: idle RSS)"}


def bare_receive(path: Path, into: Path) -> tuple[float, str]:
    """Seconds a bare receiver takes for `path`, and the digest it computed: what any server must
    do with an upload here, and nothing else (no HTTP, no tus, no store).

    Another process sends the file over loopback TCP (`socket.sendfile`); this one reads it into
    2 MiB buffers (`recv_into`), hashes each in a second thread (hashlib drops the GIL while it
    hashes, as L1's upload thread does), writes each to `into` and fsyncs once at the end. On a
    machine whose cores are shared by sender, receiver and hasher this, not raw `sha3_256` of a
    file in the page cache, is the floor an upload's time can reach (docs/performance.md).
    """
    size, piece = path.stat().st_size, 2 * CHUNK
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(path), str(port)])
        connection, _ = server.accept()
    pieces: queue.Queue[memoryview | None] = queue.Queue(maxsize=3)
    hasher = hashlib.sha3_256()

    def hash_pieces() -> None:
        while (data := pieces.get()) is not None:
            hasher.update(data)

    thread = threading.Thread(target=hash_pieces)
    started = time.perf_counter()
    thread.start()
    received = 0
    with connection, open(into, "wb", buffering=0) as out:
        while received < size:
            view, filled = memoryview(bytearray(piece)), 0
            while filled < piece and received + filled < size:
                got = connection.recv_into(view[filled:])
                if not got:
                    raise RuntimeError("the sender stopped early")
                filled += got
            received += filled
            out.write(view[:filled])
            pieces.put(view[:filled])
        pieces.put(None)
        thread.join()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    sender.wait(timeout=60)
    into.unlink()
    return seconds, hasher.hexdigest()


_SENDER = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as sock, open(sys.argv[1], "rb") as handle:
    sock.sendfile(handle)
"""
