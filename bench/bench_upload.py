"""Upload throughput and memory: a 1 GiB file through the real HTTP server (waitress).

Starts its own redis-server, the development L2 (for a real Bearer token) and the web app under
waitress in a separate process (`served`: as `python app.py` serves it), then uploads a generated
file streamed from disk to `POST /cache/upload`, once as a raw body and once as
multipart/form-data. Throughput is compared with `hashlib.sha3_256` over the same bytes read from
the same file in the same run (goal ≥ 0.85); the web process's peak RSS during the upload, polled
with psutil, is compared with its idle RSS (goal ≤ idle + 64 MiB).

`python bench/bench_upload.py` runs it alone; `BENCH_UPLOAD_MB` changes the size (default 1024).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from served import CHUNK, RssPeak, hash_baseline, make_file, rss_row, served, throughput_row  # noqa: E402

#: Size of the uploaded file in MiB (1 GiB as the issue asks).
SIZE_MB = int(os.environ.get("BENCH_UPLOAD_MB", "1024"))
#: Goals from the issue.
THROUGHPUT_GOAL, RSS_GOAL_MIB = 0.85, 64
#: Multipart boundary used by the client.
BOUNDARY = "l1benchboundary7d1f0c2a"


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
        with served(work, {"MAX_UPLOAD_BYTES": str(SIZE_MB * CHUNK + CHUNK)}) as web:
            return measure(source, web.port, web.token, web.pid)


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
        out.append(throughput_row(f"upload {size_mib:.0f} MiB, {label}: MiB/s vs raw sha3_256", size_mib, seconds,
                                  base_seconds, f">= {THROUGHPUT_GOAL}"))
        out.append(throughput_row(f"upload {size_mib:.0f} MiB, {label}: app part only (after waitress buffered it)",
                                  size_mib, body["app_seconds"], base_seconds))
        out.append(rss_row(f"upload {size_mib:.0f} MiB, {label}: web peak RSS over idle", rss.peak, idle, RSS_GOAL_MIB))
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)
