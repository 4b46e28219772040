"""Faults injected for real (reliability.md §3): each test breaks one part and checks that the
run's final state and reason are right, nothing acknowledged is lost, and the server keeps serving.

Real parts throughout: redis-server processes we stop, real RQ worker processes we signal, real
ffmpeg, a real tmpfs filled to the brim (we run as root; see `tiny_disk`), a real misbehaving
HTTP server standing in for L2. The one test double is the hanging `ffmpeg` binary of F19, since
the fault under test is the hang itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import redis

from devl2.testing import sign_in
from l1web.devtools.processes import RedisServer, free_port, python_process, stop_process
from l1web.jobs.queues import run_service
from l1web.recipes.parse import parse_recipe
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import StateManager, connect
from l1web.store import STALE_TEMP_AGE, ContentStore
from l1web.users import User
from l1web.web import create_app, errors
from tests.helpers import put_image

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}
RAW = {"Content-Type": "application/octet-stream", **JSON}
ALICE = User("alice")
#: Seconds a test waits for a run to settle before failing (far above what any run here needs).
RUN_WAIT = 60


def sha3(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


def download(client, digest: str) -> bytes:
    with client.get(f"/cache/{digest}") as response:
        assert response.status_code == 200, response.data[:300]
        return response.data


# Helpers ---------------------------------------------------------------------------------------
def make_video(path: Path, seconds: float, size: str = "320x240") -> Path:
    """A silent H.264 test clip (no audio, so planning never needs ffmpeg)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=duration={seconds}:size={size}:rate=25", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p",
         str(path)], check=True)
    return path


def wait_for_run(state, run_id: str, timeout: float = RUN_WAIT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id[:12]} still {state.runs.get(run_id)['status']} after {timeout} s: "
                         f"{state.runs.step_states(run_id)}")


def wait_for_step(state, run_id: str, step_id: str, status: str, timeout: float = RUN_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while state.runs.step_states(run_id).get(step_id, {}).get("status") != status:
        assert time.monotonic() < deadline, f"step {step_id} never became {status}"
        time.sleep(0.05)


def hash_named_files(root: Path) -> set[str]:
    """Every file stored under a content-hash name (`ab/abcdef…`)."""
    return {p.name for p in root.glob("??/*") if p.is_file() and len(p.name) == 64}


def submit_recipe(service, state, yaml_text: str, inputs: dict) -> dict:
    recipe = parse_recipe(yaml_text)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=yaml_text,
                       recipe=recipe.to_dict())
    run, created = service.submit(Submission(recipe.id, inputs), ALICE)
    assert created
    return run


# F5/F7: Redis unreachable during requests ---------------------------------------------------------
@pytest.fixture()
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A Redis of this test's own, that the test may stop (never the session's)."""
    server = RedisServer(tmp_path / "own-redis", aof=True).start()
    yield server
    server.stop()


def test_redis_down_answers_503_to_every_kind_of_request_and_recovers(settings, dev_l2, own_redis, tmp_path):
    settings = settings.with_changes(redis_url=f"{own_redis.url}/5", cache_dir=tmp_path / "own-cache")
    app = create_app(settings, state=StateManager.from_url(settings.redis_url))
    alice = sign_in(app, dev_l2, "alice")
    digest = alice.post("/cache/upload", data=b"kept across the outage", headers=RAW).json["digest"]
    bob_token = dev_l2.mint("bob", settings.l1_public_url)
    bearer = {"Authorization": f"Bearer {bob_token}", **JSON}
    anyone = app.test_client()
    requests = {
        "page with cookie": lambda: alice.get("/media", headers=HTML),
        "htmx fragment": lambda: alice.get("/runs/fragment", headers={"HX-Request": "true"}),
        "JSON API with cookie": lambda: alice.get("/cache", headers=JSON),
        "JSON API with Bearer": lambda: anyone.get("/cache", headers=bearer),
        "download with Bearer": lambda: anyone.get(f"/cache/{digest}", headers=bearer),
        "upload with cookie": lambda: alice.post("/cache/upload", data=b"new bytes", headers=RAW),
        "upload with Bearer": lambda: anyone.post("/cache/upload", data=b"new bytes",
                                                  headers={**bearer, "Content-Type": "application/octet-stream"}),
        "run submission": lambda: alice.post("/runs", json={"recipe": "invert", "inputs": [digest]}),
        "sign-in": lambda: anyone.get("/auth", query_string={"auth_token": bob_token}, headers=JSON),
    }
    own_redis.stop()
    for what, call in requests.items():
        response = call()
        assert response.status_code == 503, (what, response.status_code, response.data[:300])
        text = response.get_data(as_text=True)
        assert "Redis" in text and "unreachable" in text, (what, text[:300])
        assert "Traceback" not in text
        assert "Set-Cookie" not in response.headers or what != "sign-in"
    assert anyone.get("/", headers=HTML).status_code == 200  # public pages need no Redis
    own_redis.start()
    assert download(alice, digest) == b"kept across the outage"
    assert anyone.get("/cache", headers=bearer).status_code == 200
    assert alice.post("/cache/upload", data=b"after the outage", headers=RAW).status_code == 201


def test_a_revoked_token_is_never_let_in_while_redis_is_down(settings, dev_l2, own_redis, tmp_path):
    settings = settings.with_changes(redis_url=f"{own_redis.url}/5", cache_dir=tmp_path / "own-cache")
    app = create_app(settings, state=StateManager.from_url(settings.redis_url))
    alice = sign_in(app, dev_l2, "alice")
    anyone = app.test_client()
    assert anyone.post("/auth/revoke-user", json={"username": "alice", "tokens": [alice.token]}).status_code == 200
    bearer = {"Authorization": f"Bearer {alice.token}", **JSON}
    own_redis.stop()
    for call in (lambda: anyone.get("/cache", headers=bearer), lambda: alice.get("/cache", headers=JSON),
                 lambda: alice.get("/auth/whoami", headers=JSON)):
        assert call().status_code == 503
    own_redis.start()  # AOF kept the revocation
    assert anyone.get("/cache", headers=bearer).status_code == 401
    assert alice.get("/cache", headers=JSON).status_code == 401


def test_a_stalled_redis_answers_503_after_the_socket_timeout_never_hangs(settings, dev_l2, own_redis, tmp_path):
    """SIGSTOP: connections are accepted but never answered (a Redis frozen by a long fork or swap)."""
    settings = settings.with_changes(redis_url=f"{own_redis.url}/5", cache_dir=tmp_path / "own-cache")
    quick = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=1, socket_timeout=1)
    app = create_app(settings, state=StateManager(quick))
    alice = sign_in(app, dev_l2, "alice")
    bearer = {"Authorization": f"Bearer {alice.token}", **JSON}
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        for call in (lambda: alice.get("/cache", headers=JSON), lambda: app.test_client().get("/cache", headers=bearer),
                     lambda: alice.get("/media", headers=HTML)):
            response = call()
            assert response.status_code == 503 and b"Redis" in response.data
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    assert alice.get("/cache", headers=JSON).status_code == 200


def test_redis_refusing_writes_is_503_and_keeps_what_it_has(settings, dev_l2, own_redis, tmp_path, caplog,
                                                            monkeypatch):
    """Redis out of memory under `noeviction` (F8): writes fail, reads go on, keys are untouched."""
    settings = settings.with_changes(redis_url=f"{own_redis.url}/5", cache_dir=tmp_path / "own-cache")
    app = create_app(settings, state=StateManager.from_url(settings.redis_url))
    alice = sign_in(app, dev_l2, "alice")
    digest = alice.post("/cache/upload", data=b"stored before memory ran out", headers=RAW).json["digest"]
    admin = connect(settings.redis_url)
    before = sorted(admin.keys("*"))
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    monkeypatch.setattr(errors, "_refusals", errors._RefusalLog())
    try:
        for call in (lambda: alice.post("/cache/upload", data=b"one more item", headers=RAW),
                     lambda: alice.post("/runs", json={"recipe": "invert", "inputs": [digest]})):
            response = call()
            assert response.status_code == 503, response.data[:300]
            assert "Redis" in response.json["message"] and "writes" in response.json["message"]
        refusals = [r for r in caplog.records if "redis refuses writes" in r.getMessage()]
        assert len(refusals) == 1  # one alert, not one per request
        assert download(alice, digest) == b"stored before memory ran out"  # reads still work
        assert not (tmp_path / "own-cache" / sha3(b"one more item")[:2]).exists()
        assert list((tmp_path / "own-cache" / "tmp").iterdir()) == []
        assert sorted(k for k in admin.keys("*") if not k.startswith("artdag:rate:")) == \
            sorted(k for k in before if not k.startswith("artdag:rate:"))
    finally:
        admin.config_set("maxmemory", "0")
    assert alice.post("/cache/upload", data=b"one more item", headers=RAW).status_code == 201


# F10/F11: disk full -----------------------------------------------------------------------------
@pytest.fixture()
def tiny_disk(tmp_path) -> Iterator[Path]:
    """A real 4 MiB tmpfs: ENOSPC comes from the kernel, not from a patched write.

    Mounting needs root, which this project's CI has (it installs packages with apt-get).
    """
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the filesystem at `disk` until only about `leave` bytes are free."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def test_disk_full_during_an_upload_is_507_with_nothing_left(settings, state, dev_l2, tiny_disk):
    settings = settings.with_changes(cache_dir=tiny_disk / "cache")
    app = create_app(settings, state=state)
    alice = sign_in(app, dev_l2, "alice")
    kept = alice.post("/cache/upload", data=b"acknowledged before the disk filled", headers=RAW).json["digest"]
    filler = fill(tiny_disk, leave=256 * 1024)
    big = os.urandom(1024 * 1024)
    for response in (
        alice.post("/cache/upload", data=big, headers=RAW),
        alice.post("/media", data=multipart(big), headers=JSON,
                   content_type=f"multipart/form-data; boundary={BOUNDARY}"),
    ):
        assert response.status_code == 507, response.data[:300]
        assert "storage full" in response.json["message"]
    store = app.extensions["l1"].store
    assert list(store.tmp.iterdir()) == []
    assert hash_named_files(store.root) == {kept}
    assert state.cache.count() == 1 and not state.cache.exists(sha3(big))
    assert download(alice, kept) == b"acknowledged before the disk filled"
    filler.unlink()
    assert alice.post("/cache/upload", data=big, headers=RAW).status_code == 201


def test_a_render_output_enters_the_store_without_needing_twice_its_size(state, tiny_disk):
    """The output is on the cache's filesystem already: it must move in, not be copied."""
    store = ContentStore(tiny_disk / "cache", state.cache)
    output = tiny_disk / "cache" / "work" / "step-x" / "out.bin"
    output.parent.mkdir(parents=True)
    data = os.urandom(2 * 1024 * 1024)
    output.write_bytes(data)
    filler = fill(tiny_disk, leave=512 * 1024)  # room for a quarter of a copy, not a whole one
    digest = store.put_file(output, source="render")
    assert digest == sha3(data) and not output.exists()
    assert store.path_for(digest).read_bytes() == data
    assert list(store.tmp.iterdir()) == []
    filler.unlink()


BOUNDARY = "faults-boundary"


def multipart(data: bytes) -> bytes:
    """A one-file multipart body, built by hand so the test client spools nothing to disk."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


BIG_RENDER = """
name: big-render
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: grown, type: RESIZE, config: {width: 1280, height: 720}, inputs: [clip]}
  output: grown
"""


def test_disk_full_during_a_render_fails_the_step_with_no_space(settings, state, tiny_disk, start_worker,
                                                                 tmp_path):
    cache = tiny_disk / "cache"
    store = ContentStore(cache, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    clip = store.put_file(make_video(tmp_path / "clip.mp4", 2, "160x120"), source="test")
    filler = fill(tiny_disk, leave=64 * 1024)
    start_worker(env={"CACHE_DIR": str(cache)})
    run = wait_for_run(state, submit_recipe(service, state, BIG_RENDER, {"clip": clip})["id"])
    assert run["status"] == RunStatus.FAILED
    assert "no space" in run["error"].lower() and "grown" in run["error"], run["error"]
    step = state.runs.step_states(run["id"])["grown"]
    assert step["status"] == StepStatus.FAILED and "no space" in step["error"].lower()
    assert hash_named_files(cache) == {clip}
    assert list((cache / "tmp").iterdir()) == []
    assert list((cache / "work").iterdir()) == []
    assert store.path_for(clip)  # the input is intact
    filler.unlink()
    again, _ = service.submit(Submission(parse_recipe(BIG_RENDER).id, {"clip": clip}, force=True), ALICE)
    again = wait_for_run(state, again["id"])
    assert again["status"] == RunStatus.COMPLETED, again.get("error")


# F12-F15: L2 misbehaving ------------------------------------------------------------------------
class MisbehavingL2(BaseHTTPRequestHandler):
    """A real HTTP server that answers `/auth/verify` with whatever `behaviour` says."""

    protocol_version = "HTTP/1.1"
    behaviour: dict = {}
    calls: list = []

    def do_POST(self):
        self.calls.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        kind = self.behaviour.get("kind")
        if kind == "slow":
            time.sleep(self.behaviour["delay"])
        if kind == "drip":  # headers at once, then one byte at a time, never quite timing out
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(self.behaviour["every"])
            return
        if kind == "drip-headers":  # a status line, then header bytes one by one, for ever
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.behaviour["every"])
            return
        if kind == "hang-up":  # reads the request, then closes without a word
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.behaviour.get("body", b"{}")
        self.send_response(self.behaviour.get("status", 200))
        for name, value in self.behaviour.get("headers", {}).items():
            self.send_header(name, value)
        if self.behaviour.get("chunked"):  # no Content-Length: the cap must hold while reading
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for start in range(0, len(body), 4096):
                    piece = body[start:start + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading at its cap and hung up
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HungUpOn(ThreadingHTTPServer):
    """The stub's server: L1 hanging up on a dripping or slow answer is what these tests expect,
    so a write to the closed connection is not printed as an error (other errors still are)."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture()
def bad_l2() -> Iterator[tuple[str, type[MisbehavingL2]]]:
    server = HungUpOn(("127.0.0.1", 0), MisbehavingL2)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    MisbehavingL2.behaviour, MisbehavingL2.calls = {}, []
    yield f"http://127.0.0.1:{server.server_address[1]}", MisbehavingL2
    server.shutdown()
    server.server_close()


def good_answer(**fields) -> bytes:
    body = {"valid": True, "username": "alice", "l1": "http://127.0.0.1:8100", "expires_at": int(time.time()) + 600}
    return json.dumps({**body, **fields}).encode()


def l2_sign_in(settings, state, l2_url: str, **changes):
    app = create_app(settings.with_changes(l2_servers=(l2_url,), **changes), state=state)
    client = app.test_client()
    return client, client.get("/auth", query_string={"auth_token": "a.b.c"}, headers=JSON)


def no_session_written(redis_client) -> bool:
    return [k for k in redis_client.keys("*") if not k.startswith("artdag:rate:")] == []


@pytest.mark.parametrize(("behaviour", "status", "words"), [
    ({"kind": "redirect", "status": 302, "headers": {"Location": "http://127.0.0.1:9/auth/verify"}}, 502,
     "unexpected answer"),
    ({"kind": "redirect", "status": 307, "headers": {"Location": "/auth/verify-elsewhere"}}, 502,
     "unexpected answer"),
    ({"body": b"<html>maintenance</html>"}, 502, "not JSON"),
    ({"body": b"[1, 2, 3]"}, 401, None),
    ({"body": b'"valid"'}, 401, None),
    ({"body": b"null"}, 401, None),
    ({"body": good_answer(valid=1)}, 401, None),
    ({"body": good_answer(username=["alice"])}, 401, None),
    ({"body": good_answer(expires_at=float("inf")).replace(b"Infinity", b"1e999")}, 401, None),
    ({"body": b"{" * 10_000 + b"}" * 10_000}, 502, None),
    ({"body": b" " * (1024 * 1024)}, 502, "too large"),
    ({"body": b" " * (1024 * 1024), "chunked": True}, 502, "too large"),
    ({"body": good_answer(expires_at="0001-01-01T00:00:00+14:00")}, 401, None),
    ({"status": 503, "body": b"{}"}, 502, "unexpected answer"),
    ({"kind": "hang-up"}, 503, "cannot be reached"),
])
def test_l2_answering_garbage_never_gives_a_session(settings, state, redis_client, bad_l2, behaviour, status,
                                                    words):
    url, handler = bad_l2
    handler.behaviour = behaviour
    client, response = l2_sign_in(settings, state, url)
    assert response.status_code == status, response.data[:300]
    assert "Set-Cookie" not in response.headers
    if words:
        assert words in response.json["message"]
    assert len(handler.calls) == 1  # never a retry storm, never a followed redirect
    assert no_session_written(redis_client)
    assert client.get("/cache", headers=JSON).status_code == 401


def test_l2_refusing_connections_is_503_with_no_session(settings, state, redis_client):
    client, response = l2_sign_in(settings, state, f"http://127.0.0.1:{free_port()}")
    assert response.status_code == 503 and "cannot be reached" in response.json["message"]
    assert "Set-Cookie" not in response.headers and no_session_written(redis_client)


def test_l2_slow_beyond_the_timeout_is_504(settings, state, redis_client, bad_l2):
    url, handler = bad_l2
    handler.behaviour = {"kind": "slow", "delay": 3, "body": good_answer()}
    started = time.monotonic()
    _, response = l2_sign_in(settings, state, url, l2_timeout=0.5)
    assert response.status_code == 504 and "did not answer in time" in response.json["message"]
    assert time.monotonic() - started < 2.5
    assert no_session_written(redis_client)


def test_l2_dripping_its_answer_is_cut_off_at_the_timeout(settings, state, redis_client, bad_l2):
    """Each byte arrives within the read timeout, so only a whole-answer deadline stops it."""
    url, handler = bad_l2
    handler.behaviour = {"kind": "drip", "every": 0.2}
    started = time.monotonic()
    _, response = l2_sign_in(settings, state, url, l2_timeout=1.0)
    assert response.status_code == 504 and "Set-Cookie" not in response.headers
    assert time.monotonic() - started < 3
    assert no_session_written(redis_client)


def test_l2_dripping_its_headers_is_cut_off_at_the_timeout(settings, state, redis_client, bad_l2):
    url, handler = bad_l2
    handler.behaviour = {"kind": "drip-headers", "every": 0.2}
    started = time.monotonic()
    _, response = l2_sign_in(settings, state, url, l2_timeout=1.0)
    assert response.status_code == 504 and "Set-Cookie" not in response.headers
    assert time.monotonic() - started < 3
    assert no_session_written(redis_client)


def test_the_server_keeps_serving_after_l2_faults(settings, state, bad_l2):
    url, handler = bad_l2
    handler.behaviour = {"body": b"garbage"}
    app = create_app(settings.with_changes(l2_servers=(url,)), state=state)
    client = app.test_client()
    assert client.get("/auth", query_string={"auth_token": "a.b.c"}, headers=JSON).status_code == 502
    handler.behaviour = {"body": good_answer()}
    assert client.get("/auth", query_string={"auth_token": "a.b.c"}).status_code == 303
    assert client.get("/auth/whoami", headers=JSON).json["username"] == "alice"


# F16: a cached file corrupted on disk ---------------------------------------------------------------
def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_item_is_refused_quarantined_and_reported(alice_client, state, settings, caplog):
    data = os.urandom(4096)
    digest = alice_client.post("/cache/upload", data=data, headers=RAW).json["digest"]
    other = alice_client.post("/cache/upload", data=b"an unaffected item", headers=RAW).json["digest"]
    flip_a_byte(settings.cache_dir / digest[:2] / digest)
    with caplog.at_level("ERROR"):
        response = alice_client.get(f"/cache/{digest}", headers=JSON)
    assert response.status_code == 410 and "integrity check failed" in response.json["message"]
    assert digest in response.json["message"]
    assert data not in response.data
    assert any(digest in r.getMessage() and "quarantin" in r.getMessage() for r in caplog.records)
    assert "integrity check failed" in state.cache.quarantined()[digest]["reason"]
    assert [p.name.split(".")[0] for p in (settings.cache_dir / "quarantine").iterdir()] == [digest]
    for suffix in ("", "/meta"):
        again = alice_client.get(f"/cache/{digest}{suffix}", headers=JSON)
        assert again.status_code == 410 and "quarantined" in again.json["message"]
    assert alice_client.get(f"/media/{digest}", headers=HTML).status_code == 410
    assert download(alice_client, other) == b"an unaffected item"
    assert digest not in [i["digest"] for i in alice_client.get("/cache", headers=JSON).json["items"]]


def test_a_run_whose_input_is_corrupted_fails_naming_the_hash(service, state, store, start_worker, tmp_path):
    digest = put_image(store, tmp_path)
    flip_a_byte(store.location(digest))
    start_worker()
    run, _ = service.submit(Submission("invert", [digest]), ALICE)
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.FAILED
    assert digest in run["error"] and "integrity" in run["error"], run["error"]
    assert digest in state.cache.quarantined()
    assert not store.location(digest).exists()


SHARED_STEP = """
name: shared-step
dag:
  nodes:
    - {id: image, type: SOURCE, config: {input: true, name: image}}
    - {id: inverted, type: EFFECT, config: {effect: invert}, inputs: [image]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [inverted]}
  output: grey
"""


def test_a_corrupted_step_output_is_rendered_again_not_reused(service, state, store, start_worker, tmp_path):
    digest = put_image(store, tmp_path)
    start_worker()
    first, _ = service.submit(Submission("invert", [digest]), ALICE)
    first = wait_for_run(state, first["id"])
    output = first["output_hash"]
    good = store.location(output).read_bytes()
    flip_a_byte(store.location(output))
    second = wait_for_run(state, submit_recipe(service, state, SHARED_STEP, {"image": digest})["id"])
    assert second["status"] == RunStatus.COMPLETED, second.get("error")
    states = state.runs.step_states(second["id"])
    assert states["inverted"]["status"] == StepStatus.COMPLETED  # rendered again, not the bad bytes
    assert states["inverted"]["output"] == output
    assert store.path_for(output).read_bytes() == good
    assert output not in state.cache.quarantined()  # healed by the fresh render


# F17: stale temp files after a crash ------------------------------------------------------------------
def make_stale(path: Path, data: bytes = b"left by a crash") -> Path:
    """A temp file, or a step's work folder with a half-written output, last written long ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = time.time() - STALE_TEMP_AGE - 60
    if path.name.startswith("step-"):
        path.mkdir()
        (path / "out.mp4").write_bytes(data)
        os.utime(path / "out.mp4", (old, old))
    else:
        path.write_bytes(data)
    os.utime(path, (old, old))
    return path


def test_stale_temp_files_are_swept_when_the_web_app_starts(settings, state):
    cache = settings.cache_dir
    stale = make_stale(cache / "tmp" / "ingest-crashed.part")
    stale_work = make_stale(cache / "work" / "step-crashed")
    fresh = cache / "tmp" / "ingest-inflight.part"
    fresh.write_bytes(b"another process is still writing this")
    app = create_app(settings, state=state)
    assert not stale.exists() and not stale_work.exists() and fresh.exists()
    assert app.test_client().get("/", headers=HTML).status_code == 200


def test_stale_temp_files_are_swept_when_a_worker_starts(settings, state, worker_env, tmp_path):
    cache = settings.cache_dir
    ContentStore(cache, state.cache)
    stale = make_stale(cache / "tmp" / "ingest-crashed.part")
    stale_work = make_stale(cache / "work" / "step-crashed")
    fresh_work = make_stale(cache / "work" / "step-running")
    (fresh_work / "out.mp4").write_bytes(b"a render still writing")  # old folder, fresh output
    proc = python_process(["worker.py", "--burst"], worker_env, log=tmp_path / "burst.log")
    try:
        assert proc.wait(30) == 0, (tmp_path / "burst.log").read_text()
    finally:
        stop_process(proc)
    assert not stale.exists() and not stale_work.exists()
    assert fresh_work.exists()
    assert state.cache.count() == 0


# F19: ffmpeg hanging ----------------------------------------------------------------------------------
HANGING_FFMPEG = """#!/bin/sh
# A stand-in for an ffmpeg stuck on crafted input: it and a child of its own never finish.
# (`-version`, asked for provenance records, answers at once.)
[ "$1" = "-version" ] && {{ echo "ffmpeg version hanging-test-double"; exit 0; }}
echo $$ >> "{pids}"
sleep 300 &
echo $! >> "{pids}"
wait
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_hanging_ffmpeg_is_killed_with_its_whole_group_at_the_step_timeout(service, state, store,
                                                                            start_worker, tmp_path):
    pids = tmp_path / "ffmpeg.pids"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(HANGING_FFMPEG.format(pids=pids))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    clip = store.put_file(make_video(tmp_path / "clip.mp4", 1, "160x120"), source="test")
    worker = start_worker(env={"FFMPEG": str(fake), "STEP_TIMEOUT": "1"})
    run, _ = service.submit(Submission("invert", [clip]), ALICE)
    run = wait_for_run(state, run["id"], timeout=30)
    assert run["status"] == RunStatus.FAILED
    assert "ffmpeg timed out after" in run["error"], run["error"]
    started = [int(line) for line in pids.read_text().split()]
    assert len(started) >= 2
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in started if alive(pid)], "ffmpeg or its child outlived the timeout"
    assert worker.poll() is None  # the worker itself carries on
    assert list((store.root / "work").iterdir()) == []
    image = put_image(store, tmp_path)
    after, _ = service.submit(Submission("invert", [image]), ALICE)  # image effects need no ffmpeg
    assert wait_for_run(state, after["id"])["status"] == RunStatus.COMPLETED


# F21: SIGTERM during a render ---------------------------------------------------------------------------
def ffmpeg_children(worker: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(worker.pid).children(recursive=True) if "ffmpeg" in p.name()]


def test_one_sigterm_lets_the_running_step_finish_then_the_worker_exits(service, state, store,
                                                                       start_worker, tmp_path):
    clip = store.put_file(make_video(tmp_path / "clip.mp4", 4, "640x360"), source="test")
    worker = start_worker()
    run, _ = service.submit(Submission("blur", [clip]), ALICE)
    wait_for_step(state, run["id"], "blur", StepStatus.RUNNING)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(RUN_WAIT) == 0
    run = state.runs.get(run["id"])
    assert run["status"] == RunStatus.COMPLETED, (run.get("error"), state.runs.step_states(run["id"]))
    assert store.path_for(run["output_hash"])


def test_a_second_sigterm_stops_the_render_and_fails_the_step_with_a_reason(service, state, store,
                                                                            start_worker, tmp_path):
    clip = store.put_file(make_video(tmp_path / "clip.mp4", 8, "1280x720"), source="test")
    worker = start_worker(env={"STEP_RETRIES": "0"})  # with retries the step would wait for another worker
    run, _ = service.submit(Submission("blur", [clip]), ALICE)
    wait_for_step(state, run["id"], "blur", StepStatus.RUNNING)
    deadline = time.monotonic() + 10
    while not ffmpeg_children(worker):
        assert time.monotonic() < deadline, "ffmpeg never started"
        time.sleep(0.05)
    renders = ffmpeg_children(worker)
    worker.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within one second of the first
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    run = wait_for_run(state, run["id"], timeout=10)
    assert run["status"] == RunStatus.FAILED
    assert "blur" in run["error"] and "shut down" in run["error"], run["error"]
    psutil.wait_procs(renders, timeout=5)
    assert not [p.pid for p in renders if alive(p.pid)], "ffmpeg outlived its worker"
    assert hash_named_files(store.root) == {clip}
    assert list((store.root / "tmp").iterdir()) == []
