"""Resumable uploads (tus 1.0) against the real app under real waitress, with real Redis and
dev-L2 tokens: chunked uploads equal plain ones, bad offsets/lengths/checksums and other users'
ids change nothing, one of two concurrent PATCHes wins, expiry sweeps, the in-flight limit."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devl2.testing import stop_waitress
from l1web.devtools.processes import free_port, python_process, stop_process, wait_for
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.store.ingest import POOL_BUFFER, Hashing, take_buffer
from l1web.store.uploads import UPLOADS_DIR, UploadStore, UploadSweeper, forget_hash_states
from l1web.web import create_app
from l1web.web.bodies import MAX_BODY, ArrivalHash, Budget, MemoryBody, MemoryBodyParser
from l1web.web.keepalive import create_server
from l1web.web.serving import waitress_options

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


class Waitress:
    """The app served by waitress exactly as `python app.py` serves it (`waitress_options`, and
    `keepalive.create_server`, which keeps connections open after 204s)."""

    def __init__(self, settings: Settings, state: StateManager) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.settings = settings.with_changes(l1_public_url=self.url, port=port)
        options = {**waitress_options(self.settings), "threads": 4}
        self.server = create_server(create_app(self.settings, state=state), **options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        stop_waitress(self.server, self.thread)


@pytest.fixture()
def make_server(settings, state, dev_l2) -> Iterator:
    servers: list[Waitress] = []

    def make(**changes) -> Waitress:
        server = Waitress(settings.with_changes(**changes), state)
        dev_l2.allow(server.url)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    forget_hash_states()


@pytest.fixture()
def server(make_server) -> Waitress:
    return make_server()


def session(dev_l2, server: Waitress, user: str = "alice") -> requests.Session:
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {dev_l2.mint(user, server.url)}", "Accept": "application/json"})
    return s


def create(s: requests.Session, server: Waitress, length: int, name: str = "clip.bin") -> str:
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    answer = s.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": str(length),
                                                            "Upload-Metadata": meta})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in answer.headers
    return server.url + answer.headers["Location"]


def patch(s: requests.Session, url: str, offset: int, data: bytes, **headers) -> requests.Response:
    return s.patch(url, data=data, headers={**PATCH, "Upload-Offset": str(offset), **headers})


def head_offset(s: requests.Session, url: str) -> int:
    answer = s.head(url, headers=TUS)
    assert answer.status_code == 200
    return int(answer.headers["Upload-Offset"])


def upload_file(s, server, data: bytes, chunk: int) -> requests.Response:
    url = create(s, server, len(data))
    offset, answer = 0, None
    while offset < len(data):
        answer = patch(s, url, offset, data[offset:offset + chunk])
        assert answer.status_code == 204, answer.text
        offset = int(answer.headers["Upload-Offset"])
    return answer


def part_files(settings: Settings) -> list[Path]:
    return sorted((settings.cache_dir / UPLOADS_DIR).glob("*.part"))


# The protocol and the store ----------------------------------------------------------------------
def test_discovery_names_version_extensions_and_checksums(server):
    answer = requests.options(f"{server.url}/cache/uploads")
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert set(answer.headers["Tus-Extension"].split(",")) >= {"creation", "termination", "checksum", "expiration"}
    assert "sha1" in answer.headers["Tus-Checksum-Algorithm"].split(",")


def test_64_mib_in_chunks_equals_a_plain_upload(server, dev_l2):
    s = session(dev_l2, server)
    data = os.urandom(64 * MiB)
    digest = hashlib.sha3_256(data).hexdigest()
    last = upload_file(s, server, data, 8 * MiB)
    assert last.headers["L1-Digest"] == digest
    assert s.get(f"{server.url}/cache/{digest}").content == data
    meta = s.get(f"{server.url}/cache/{digest}/meta").json()
    assert meta["owner"] == "alice" and meta["size"] == len(data) and meta["name"] == "clip.bin"
    plain = s.post(f"{server.url}/cache/upload", data=data, headers={"Content-Type": "application/octet-stream"})
    assert plain.status_code == 200 and plain.json()["digest"] == digest and plain.json()["new"] is False
    assert part_files(server.settings) == []  # the finished upload was renamed into the store
    assert s.get(f"{server.url}/cache").json()["total"] == 1


def test_lost_hash_state_is_rehashed_from_disk_once_complete(server, dev_l2):
    s = session(dev_l2, server)
    data = os.urandom(3 * MiB)
    url = create(s, server, len(data))
    assert patch(s, url, 0, data[:MiB]).status_code == 204
    forget_hash_states()  # as after a restart, or when the previous PATCH went to another process
    assert patch(s, url, MiB, data[MiB:2 * MiB]).status_code == 204
    last = patch(s, url, 2 * MiB, data[2 * MiB:])
    assert last.headers["L1-Digest"] == hashlib.sha3_256(data).hexdigest()
    done = s.head(url, headers=TUS)  # a client that lost the last answer still learns the hash
    assert done.headers["Upload-Offset"] == str(len(data)) and done.headers["L1-Digest"] == last.headers["L1-Digest"]


def test_bad_offsets_lengths_and_headers_are_4xx_and_change_nothing(server, dev_l2):
    s = session(dev_l2, server)
    url = create(s, server, 1000)
    assert patch(s, url, 0, b"a" * 400).status_code == 204
    cases = [
        (patch(s, url, 100, b"b" * 10), 409, "does not match the upload's offset 400"),
        (patch(s, url, 500, b"b" * 10), 409, "does not match the upload's offset 400"),
        (patch(s, url, 400, b"b" * 601), 400, "goes past Upload-Length 1000"),
        (patch(s, url, 400, b"b", **{"Upload-Offset": "-1"}), 400, "Upload-Offset must be a non-negative"),
        (s.patch(url, data=b"b", headers={**TUS, "Upload-Offset": "400"}), 415, "application/offset+octet-stream"),
        (s.patch(url, data=b"b", headers={**PATCH, "Upload-Offset": "400", "Tus-Resumable": "0.2.2"}),
         412, "Tus-Resumable: 1.0.0"),
        (s.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": "x"}), 400, "Upload-Length must"),
        (s.post(f"{server.url}/cache/uploads", headers=TUS), 400, "Upload-Length header is missing"),
        (s.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": "0"}), 400, "at least 1"),
        (s.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": "name !!"}),
         400, "not base64"),
    ]
    for answer, status, words in cases:
        assert answer.status_code == status, (status, answer.text)
        assert words in answer.json()["message"], answer.json()
    assert head_offset(s, url) == 400
    assert [p.stat().st_size for p in part_files(server.settings)] == [400]


def test_checksums_are_checked_and_a_mismatch_keeps_nothing(server, dev_l2):
    s = session(dev_l2, server)
    data = b"0123456789" * 100
    url = create(s, server, len(data))
    good = base64.b64encode(hashlib.sha1(data[:500]).digest()).decode()
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    bad = patch(s, url, 0, data[:500], **{"Upload-Checksum": f"sha1 {wrong}"})
    assert bad.status_code == 460 and "does not match Upload-Checksum" in bad.json()["message"]
    assert head_offset(s, url) == 0 and part_files(server.settings)[0].stat().st_size == 0
    odd = patch(s, url, 0, data[:500], **{"Upload-Checksum": f"crc99 {good}"})
    assert odd.status_code == 400 and "not supported" in odd.json()["message"]
    assert patch(s, url, 0, data[:500], **{"Upload-Checksum": f"sha1 {good}"}).status_code == 204
    sha256 = base64.b64encode(hashlib.sha256(data[500:]).digest()).decode()
    last = patch(s, url, 500, data[500:], **{"Upload-Checksum": f"sha256 {sha256}"})
    assert last.headers["L1-Digest"] == hashlib.sha3_256(data).hexdigest()  # the mismatch left no trace


def test_a_large_patch_is_hashed_beside_its_writing_and_undone_whole_on_a_mismatch(server, dev_l2):
    """A 20 MiB PATCH (hashed in its own thread from pooled buffers, flushed every 8 MiB) with a
    wrong checksum leaves an empty file; sent again right, then a second PATCH, the item's hash,
    bytes and the pooled buffers' reuse are all right."""
    s = session(dev_l2, server)
    data = os.urandom(20 * MiB) + os.urandom(3 * MiB + 17)
    url = create(s, server, len(data))
    first = data[:20 * MiB]
    wrong = base64.b64encode(hashlib.sha256(first[:-1]).digest()).decode()
    bad = patch(s, url, 0, first, **{"Upload-Checksum": f"sha256 {wrong}"})
    assert bad.status_code == 460, bad.text
    assert head_offset(s, url) == 0 and part_files(server.settings)[0].stat().st_size == 0
    right = base64.b64encode(hashlib.sha256(first).digest()).decode()
    assert patch(s, url, 0, first, **{"Upload-Checksum": f"sha256 {right}"}).status_code == 204
    assert part_files(server.settings)[0].read_bytes() == first
    last = patch(s, url, len(first), data[len(first):])
    digest = hashlib.sha3_256(data).hexdigest()
    assert last.status_code == 204 and last.headers["L1-Digest"] == digest
    assert s.get(f"{server.url}/cache/{digest}").content == data


def test_another_users_upload_answers_like_an_unknown_one(server, dev_l2):
    alice, bob = session(dev_l2, server), session(dev_l2, server, "bob")
    url = create(alice, server, 100)
    assert patch(alice, url, 0, b"x" * 10).status_code == 204
    unknown = url.rsplit("/", 1)[0] + "/" + "0" * 32
    for target in (url, unknown):
        answers = [bob.head(target, headers=TUS), patch(bob, target, 10, b"y" * 10), bob.delete(target, headers=TUS)]
        assert [a.status_code for a in answers] == [404, 404, 404]
    assert patch(bob, url, 10, b"y").json()["message"].startswith("no upload ")
    assert head_offset(alice, url) == 10


def test_concurrent_patches_at_the_same_offset_one_wins_the_other_409(server, dev_l2):
    s1, s2 = session(dev_l2, server), session(dev_l2, server)
    size = 16 * MiB
    url = create(s1, server, 2 * size)
    bodies = [os.urandom(size), os.urandom(size)]
    answers: list[requests.Response] = []
    barrier = threading.Barrier(2)

    def send(s, body):
        barrier.wait()
        answers.append(patch(s, url, 0, body))

    threads = [threading.Thread(target=send, args=(s, b)) for s, b in zip((s1, s2), bodies, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [204, 409]
    assert "offset" in next(a for a in answers if a.status_code == 409).json()["message"]
    assert head_offset(s1, url) == size
    winner = next(b for b, a in zip(bodies, answers, strict=True) if a.status_code == 204) \
        if answers[0].status_code == answers[1].status_code else None
    kept = part_files(server.settings)[0].read_bytes()
    assert kept in bodies and winner in (None, kept)


def test_termination_deletes_the_bytes_and_frees_the_limit(make_server, dev_l2):
    server = make_server(upload_inflight_bytes=100)
    s = session(dev_l2, server)
    url = create(s, server, 100)
    assert patch(s, url, 0, b"z" * 50).status_code == 204
    refused = s.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": "1"})
    assert refused.status_code == 413 and "unfinished uploads already hold 100 bytes" in refused.json()["message"]
    assert s.delete(url, headers=TUS).status_code == 204
    assert s.head(url, headers=TUS).status_code == 404 and part_files(server.settings) == []
    create(s, server, 100)


def test_per_user_limit_counts_unfinished_bytes_only(make_server, dev_l2):
    server = make_server(upload_inflight_bytes=1000)
    alice, bob = session(dev_l2, server), session(dev_l2, server, "bob")
    url = create(alice, server, 600)
    over = alice.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": "500"})
    assert over.status_code == 413 and "limit of 1000 bytes" in over.json()["message"]
    create(bob, server, 600)  # the limit is per user
    assert patch(alice, url, 0, os.urandom(600)).status_code == 204  # finished: no longer in flight
    create(alice, server, 1000)
    too_big = alice.post(f"{server.url}/cache/uploads", headers={**TUS, "Upload-Length": str(10**15)})
    assert too_big.status_code == 413 and "larger than the limit" in too_big.json()["message"]


def test_expired_uploads_are_refused_then_swept(make_server, dev_l2, redis_client):
    server = make_server(upload_expiry=1, upload_inflight_bytes=150)
    s = session(dev_l2, server)
    first, second = create(s, server, 100), create(s, server, 50)
    assert patch(s, first, 0, b"q" * 30).status_code == 204
    time.sleep(1.3)
    gone = patch(s, first, 30, b"q" * 10)
    assert gone.status_code == 410 and "expired" in gone.json()["message"]
    assert len(part_files(server.settings)) == 1  # the refused one went at once
    create(s, server, 150)  # creating sweeps the other expired one and frees its bytes
    assert s.head(second, headers=TUS).status_code == 404
    assert len(part_files(server.settings)) == 1
    assert redis_client.get("artdag:uploads:inflight:alice") == "150"


def test_app_py_sweeps_expired_uploads_in_the_background(settings, worker_env, dev_l2, redis_client, tmp_path):
    """`python app.py` with a 2 s UPLOAD_EXPIRY sweeps by itself, with no request arriving: an
    abandoned upload's bytes, record and held bytes go; one still receiving PATCHes stays; a
    `.part` file no record names goes once it is older than the expiry."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dev_l2.allow(url)
    env = {**worker_env, "PORT": str(port), "HOST": "127.0.0.1", "L1_PUBLIC_URL": url, "L2_SERVER": dev_l2.url,
           "UPLOAD_EXPIRY": "2", "UPLOAD_SWEEP_INTERVAL": "0.5"}
    uploads_dir = settings.cache_dir / UPLOADS_DIR
    uploads_dir.mkdir(parents=True)
    orphan = uploads_dir / ("0" * 32 + ".part")
    orphan.write_bytes(b"left by a crash")
    os.utime(orphan, (time.time() - 5, time.time() - 5))
    log = tmp_path / "web.log"
    web = python_process(["app.py"], env, log=log)
    try:
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=1).status_code == 200, what="app.py", timeout=60)
        server = Waitress.__new__(Waitress)  # only its url is used
        server.url = url
        alice, bob = session(dev_l2, server), session(dev_l2, server, "bob")
        abandoned, _bobs = create(alice, server, 100), create(bob, server, 40)
        live = create(alice, server, 300)
        assert patch(alice, abandoned, 0, b"a" * 30).status_code == 204
        assert redis_client.get("artdag:uploads:inflight:alice") == "400"
        offset, deadline = 0, time.monotonic() + 4.5
        while time.monotonic() < deadline:  # only `live` hears from its client meanwhile
            answer = patch(alice, live, offset, b"l" * 10)
            assert answer.status_code == 204, answer.text
            offset += 10
            time.sleep(0.2)
        names = {p.name for p in part_files(settings)}
        assert names == {live.rsplit("/", 1)[1] + ".part"}, log.read_text()[-2000:]
        assert redis_client.get("artdag:uploads:inflight:alice") == "300"  # abandoned's 100 given back
        assert redis_client.get("artdag:uploads:inflight:bob") is None
        assert not redis_client.exists(f"artdag:upload:{abandoned.rsplit('/', 1)[1]}")
        assert redis_client.zcard("artdag:uploads:expiry") == 1
        assert head_offset(alice, live) == offset
        assert alice.head(abandoned, headers=TUS).status_code == 404
        assert "swept" in log.read_text()
    finally:
        stop_process(web)


def test_one_web_process_sweeps_per_interval(store, state):
    """Two web processes' sweepers share the sweep lock: one sweeps, the other skips its turn
    until the lock lapses; a PATCH's lock keeps an upload from being swept under it."""
    uploads = UploadStore(store, state.uploads)
    first, second = UploadSweeper(uploads, 0.5, 60), UploadSweeper(uploads, 0.5, 60)
    upload = uploads.create("alice", 10, max_bytes=100, expiry=0.01, limit=100, metadata={})
    busy = uploads.create("alice", 20, max_bytes=100, expiry=0.01, limit=100, metadata={})
    time.sleep(0.05)
    lock = state.uploads.lock(busy.id)
    assert lock.acquire()
    assert first.tick() == 1
    assert second.tick() is None  # the other process's turn is taken
    assert state.uploads.get(upload.id) is None and not uploads.path(upload.id).exists()
    assert state.uploads.get(busy.id) is not None and state.uploads.inflight("alice") == 20
    lock.release()
    time.sleep(0.6)
    assert second.tick() == 1 and first.tick() is None
    assert state.uploads.inflight("alice") == 0 and state.uploads.get(busy.id) is None


def test_a_refused_item_leaves_nothing_behind(server, dev_l2, redis_client):
    s = session(dev_l2, server)
    url = create(s, server, 4)
    before = {k for k in redis_client.keys("artdag:cache:*")}
    answer = patch(s, url, 0, b"")
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == "0"
    playlist = b"#EXTM3U\n#EXT-X-VERSION:3\nfile:///etc/passwd\n"
    url = create(s, server, len(playlist))
    refused = patch(s, url, 0, playlist)
    assert 400 <= refused.status_code < 500, refused.text
    assert refused.json()["message"]
    assert s.head(url, headers=TUS).status_code == 404
    assert {k for k in redis_client.keys("artdag:cache:*")} == before
    assert len(part_files(server.settings)) == 1  # only the first, still unfinished


# POST /cache/missing --------------------------------------------------------------------------------
def upload_plain(client, data: bytes) -> str:
    answer = client.post("/cache/upload", data=data, headers={"Content-Type": "application/octet-stream",
                                                               "Accept": "application/json"})
    assert answer.status_code in (200, 201), answer.data
    return answer.json["digest"]


def ask_missing(client, hashes: list[str]) -> list[str]:
    answer = client.post("/cache/missing", json={"hashes": hashes}, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.data
    return answer.json["missing"]


def test_missing_answers_in_order_and_another_users_private_item_counts_as_missing(
        alice_client, bob_client, admin_client):
    mine = upload_plain(alice_client, b"alice's own bytes")
    bobs = upload_plain(bob_client, b"bob's private bytes")
    shared = upload_plain(bob_client, b"bob's shared bytes")
    assert bob_client.post(f"/cache/{shared}/share", headers={"Accept": "application/json"}).status_code == 200
    unknown = hashlib.sha3_256(b"nobody has these").hexdigest()
    asked = [unknown, mine, bobs, shared, mine, unknown]
    assert ask_missing(alice_client, asked) == [unknown, bobs]
    assert ask_missing(bob_client, asked) == [unknown, mine]
    assert ask_missing(admin_client, asked) == [unknown]
    upload_plain(alice_client, b"bob's private bytes")  # the same bytes uploaded: now alice holds them too
    assert ask_missing(alice_client, asked) == [unknown]
    assert ask_missing(alice_client, []) == []


def test_missing_refuses_bad_input_naming_it(alice_client):
    for body, words in [({"hashes": "abc"}, "hashes"), ({"hashes": ["A" * 64]}, "not a content hash"),
                        ({"hashes": ["a" * 64] * 1001}, "at most 1000"), ([1, 2], "hashes")]:
        answer = alice_client.post("/cache/missing", json=body, headers={"Accept": "application/json"})
        assert answer.status_code == 400 and words in answer.json["message"], answer.json
    anonymous = alice_client.application.test_client()
    assert anonymous.post("/cache/missing", json={"hashes": []},
                          headers={"Accept": "application/json"}).status_code == 401


# render.py: only what is missing, resumable, with a progress bar ----------------------------------------
ROOT = Path(__file__).resolve().parent.parent
#: waitress does not close the body buffer (a temp file) of a request still being received when its
#: client goes away (`HTTPChannel.handle_close`); the garbage collector closes it, with a
#: ResourceWarning. A client killed mid-upload, or one that hangs up after its pipelined PATCHes,
#: causes exactly that, so these tests tolerate it.
WAITRESS_PARTIAL_BODY = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class PausingProxy:
    """A TCP proxy in front of the server that stops forwarding the client's bytes once `pause_at`
    bytes have passed (as a stalled network would), until `cut` closes every connection."""

    def __init__(self, target_port: int, pause_at: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.target_port, self.pause_at = target_port, pause_at
        self.forwarded = 0
        self.paused = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while True:
                if counted and self.pause_at and self.forwarded >= self.pause_at:
                    self.paused.set()
                    time.sleep(0.05)
                    continue
                # Never past `pause_at`: the bytes forwarded are then exactly `pause_at`, not "at least".
                room = self.pause_at - self.forwarded if counted and self.pause_at else 256 * 1024
                data = source.recv(min(256 * 1024, room))
                if not data:
                    break
                sink.sendall(data)
                if counted:
                    with self.lock:
                        self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection and forward freely from now on."""
        self.pause_at = 0
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path / "home"), "L1_CONFIG": str(tmp_path / "l1" / "config.json")}


def render_py(*args: str, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "render.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **popen)


@WAITRESS_PARTIAL_BODY
def test_render_py_uploads_only_what_is_missing_with_progress(server, dev_l2, cli_env, tmp_path, redis_client):
    token = dev_l2.mint("alice", server.url)
    have, new = tmp_path / "have.bin", tmp_path / "new.bin"
    have.write_bytes(os.urandom(MiB))
    new.write_bytes(os.urandom(20 * MiB + 123))
    s = session(dev_l2, server)
    upload_plain_http(s, server, have.read_bytes())
    proc = render_py("upload", str(have), str(new), "--server", server.url, "--token", token, env=cli_env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    digests = {line.split()[1]: line.split()[0] for line in out.splitlines()}
    assert digests == {str(p): hashlib.sha3_256(p.read_bytes()).hexdigest() for p in (have, new)}
    assert s.get(f"{server.url}/cache/{digests[str(new)]}").content == new.read_bytes()
    lines = [line for line in err.splitlines() if line.startswith("new.bin [")]
    assert lines and lines[-1].split("]")[1].split()[0] == "100%" and "MiB/s" in lines[-1] and "ETA" in lines[-1]
    assert not any(line.startswith("have.bin") for line in err.splitlines())  # the server had it: not sent
    records = [redis_client.hgetall(k) for k in redis_client.keys("artdag:upload:*") if ":lock:" not in k]
    assert [int(r["appended"]) for r in records] == [new.stat().st_size]  # every byte sent once


def upload_plain_http(s: requests.Session, server: Waitress, data: bytes) -> str:
    answer = s.post(f"{server.url}/cache/upload", data=data, headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["digest"]


@WAITRESS_PARTIAL_BODY
def test_killed_at_half_and_resumed_by_another_process(server, dev_l2, cli_env, tmp_path, redis_client):
    token = dev_l2.mint("alice", server.url)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 * MiB))
    digest = hashlib.sha3_256(source.read_bytes()).hexdigest()
    proxy = PausingProxy(int(server.url.rsplit(":", 1)[1]), pause_at=32 * MiB)
    dev_l2.allow(proxy.url)
    try:
        first = render_py("upload", str(source), "--server", proxy.url, "--token", token, env=cli_env)
        assert proxy.paused.wait(60), "the upload never reached half way"
        # render.py pipelines 8 MiB PATCHes on one connection: exactly 32 MiB forwarded is three
        # whole ones and a fourth short of its last bytes. The server records the three (it may
        # still be writing them now: wait for it, the connection still open), never the fourth.
        [key] = [k for k in redis_client.keys("artdag:upload:*") if ":lock:" not in k]
        deadline = time.monotonic() + 60
        while (reached := int(redis_client.hget(key, "offset") or 0)) < 24 * MiB:
            assert time.monotonic() < deadline, f"the server recorded only {reached} bytes of three whole PATCHes"
            time.sleep(0.05)
        first.kill()
        first.communicate(timeout=10)
        proxy.cut()
        s = session(dev_l2, server)
        assert int(redis_client.hget(key, "offset")) == reached == 24 * MiB  # the cut-short fourth is not kept
        second = render_py("upload", str(source), "--server", proxy.url, "--token", token, env=cli_env)
        out, err = second.communicate(timeout=120)
    finally:
        proxy.close()
    assert second.returncode == 0, err
    assert f"resuming the upload of big.bin at {reached} of {64 * MiB} bytes" in err
    assert out.split()[0] == digest
    record = redis_client.hgetall(key)
    assert record["digest"] == digest and int(record["appended"]) == 64 * MiB  # bytes received once
    with s:  # closed here: its pooled socket left to the collector warns (ResourceWarning) in whatever test runs then
        assert s.get(f"{server.url}/cache").json()["total"] == 1
        assert s.get(f"{server.url}/cache/{digest}").content == source.read_bytes()
    assert part_files(server.settings) == []
    assert json.loads(Path(cli_env["L1_CONFIG"]).with_name("uploads.json").read_text()) == {}


@WAITRESS_PARTIAL_BODY
def test_render_py_renders_a_local_file_after_asking_what_is_missing(server, dev_l2, cli_env, tmp_path, start_worker):
    from PIL import Image

    start_worker()
    token = dev_l2.mint("alice", server.url)
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (10, 200, 30)).save(image)
    proc = render_py("invert", str(image), "--sync", "--json", "--server", server.url, "--token", token, env=cli_env)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    run = json.loads(out)["run"]
    assert run["status"] == "completed"
    assert hashlib.sha3_256(image.read_bytes()).hexdigest() in json.dumps(run)


def test_tuspy_an_independent_client_uploads(server, dev_l2, tmp_path):
    from tusclient import client as tus_client

    data = os.urandom(5 * MiB + 7)
    token = dev_l2.mint("alice", server.url)
    tus = tus_client.TusClient(f"{server.url}/cache/uploads", headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, metadata={"filename": "from-tuspy.bin"},
                            upload_checksum=True)
    uploader.upload()
    digest = hashlib.sha3_256(data).hexdigest()
    answer = session(dev_l2, server).get(f"{server.url}/cache/{digest}/meta")
    assert answer.status_code == 200 and answer.json()["name"] == "from-tuspy.bin" and answer.json()["owner"] == "alice"


# The browser: the /media form uploads with tus-js-client ---------------------------------------------
#: Where the progress screenshot goes: `$E2E_SCREENSHOTS` if set (docs/screenshots holds the last
#: one looked at), else nowhere — as in tests/test_e2e.py.
SCREENSHOTS = Path(os.environ["E2E_SCREENSHOTS"]) if os.environ.get("E2E_SCREENSHOTS") else None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]}


def sign_in_page(page, url: str, user: str = "alice") -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/media")
    page.get_by_role("link", name=re.compile("Sign in with L2")).click()
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".card.wanted").get_by_role("button", name="Attach").click()
    expect(page).to_have_url(re.compile(r"/media$"))


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.browser
@WAITRESS_PARTIAL_BODY
def test_browser_uploads_with_a_progress_bar_and_resumes_after_a_reload(server, dev_l2, page, tmp_path, redis_client):
    from playwright.sync_api import expect

    source = tmp_path / "holiday.bin"
    source.write_bytes(os.urandom(24 * MiB))
    digest = hashlib.sha3_256(source.read_bytes()).hexdigest()
    sign_in_page(page, server.url)
    # The browser reaches L1 through a proxy that stalls, like a network that breaks mid-upload.
    proxy = PausingProxy(int(server.url.rsplit(":", 1)[1]), pause_at=0)
    try:
        page.set_viewport_size({"width": 1000, "height": 700})
        page.goto(f"{proxy.url}/media")
        expect(page.locator("form.media-upload")).to_have_attribute("data-resumable", "on")
        page.set_input_files("#media-file", str(source))
        proxy.pause_at = proxy.forwarded + 12 * MiB  # one 8 MiB PATCH gets through, the next stalls
        page.get_by_role("button", name="Upload").click()
        bar = page.locator("progress.upload-progress")
        expect(bar).to_be_visible()
        assert proxy.paused.wait(60)
        keys = lambda: [k for k in redis_client.keys("artdag:upload:*") if ":lock:" not in k]  # noqa: E731
        wait_until(lambda: keys() and int(redis_client.hget(keys()[0], "offset")) == 8 * MiB)
        wait_until(lambda: float(bar.get_attribute("value")) >= 8 * MiB)
        expect(page.locator(".upload-progress-text")).to_contain_text("of 24.0 MiB")
        if SCREENSHOTS is not None:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "media-upload-progress.png"))
        proxy.cut()  # the connection breaks; the page is reloaded
        page.goto(f"{proxy.url}/media")
        page.set_input_files("#media-file", str(source))
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#media-status")).to_contain_text("Resuming the upload of holiday.bin")
        expect(page.locator("#media-status")).to_contain_text("Uploaded holiday.bin", timeout=60_000)
        expect(page.locator("#media-status a")).to_have_attribute("href", f"/media/{digest}")
        expect(page.locator("#media-grid")).to_contain_text("holiday.bin")
        expect(page.get_by_label("Add a file")).to_have_value("")
    finally:
        proxy.close()
    record = redis_client.hgetall(keys()[0])
    assert record["digest"] == digest and int(record["appended"]) == 24 * MiB  # resumed, not restarted
    assert session(dev_l2, server).get(f"{server.url}/cache/{digest}").content == source.read_bytes()


@pytest.mark.browser
def test_without_javascript_the_plain_form_still_uploads(server, dev_l2, browser, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in_page(page, server.url)
        image = tmp_path / "plain.png"
        from PIL import Image

        Image.new("RGB", (20, 10), (200, 10, 10)).save(image)
        page.set_input_files("#media-file", str(image))
        page.get_by_role("button", name="Upload").click()
        digest = hashlib.sha3_256(image.read_bytes()).hexdigest()
        expect(page).to_have_url(f"{server.url}/media/{digest}")
    finally:
        context.close()


def test_pipelined_patches_are_all_answered_on_one_connection(server, dev_l2):
    """waitress (with `keepalive.create_server`) keeps the connection after a 204, so PATCHes sent
    back to back, before their answers, are each applied in order and answered on it."""
    sys.path.insert(0, str(ROOT))
    import render

    token = dev_l2.mint("alice", server.url)
    s = session(dev_l2, server)
    data = os.urandom(3 * MiB)
    url = create(s, server, len(data))
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        for offset in (0, MiB, 2 * MiB):
            sock.sendall(f"PATCH {url.split(server.url)[1]} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                         f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                         f"Upload-Offset: {offset}\r\nContent-Length: {MiB}\r\n\r\n".encode()
                         + data[offset:offset + MiB])
        answers = sock.makefile("rb")
        got = [render.read_answer(answers) for _ in range(3)]
        answers.close()
    assert [status for status, _, _ in got] == [204, 204, 204]
    assert [h["Upload-Offset"] for _, h, _ in got] == [str(MiB), str(2 * MiB), str(3 * MiB)]
    assert all(h.get("Connection") != "close" for _, h, _ in got)
    assert got[-1][1]["L1-Digest"] == hashlib.sha3_256(data).hexdigest()


# PATCH bodies in memory (l1web.web.bodies) and hashing across PATCHes ------------------------------
class RecordingBudget(Budget):
    """The real budget, remembering each reservation it granted."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.granted: list[int] = []

    def reserve(self, size: int) -> bool:
        granted = super().reserve(size)
        if granted:
            self.granted.append(size)
        return granted


def test_patch_bodies_are_held_in_memory_within_the_budget_and_given_back(server, dev_l2, monkeypatch):
    """Under waitress, tus PATCH bodies up to MAX_BODY are held as received (one reservation each,
    all given back once answered); a body past MAX_BODY, or with the budget full, takes
    waitress's own buffer; every way gives the same bytes and hash."""
    budget = RecordingBudget(20 * MiB)
    monkeypatch.setattr(MemoryBodyParser, "budget", budget)
    s = session(dev_l2, server)
    data = os.urandom(2 * MAX_BODY + 5 * MiB)
    url = create(s, server, len(data))
    sizes = [8 * MiB, MAX_BODY + 1, 3 * MiB]  # held, too large for memory, held
    offset = 0
    for size in sizes:
        answer = patch(s, url, offset, data[offset:offset + size])
        assert answer.status_code == 204, answer.text
        offset += size
    assert budget.granted == [8 * MiB, 3 * MiB]
    wait_until(lambda: budget.held == 0)  # waitress closes a request just after its answer
    monkeypatch.setattr(budget, "limit", 0)  # full: the rest goes through waitress's temp file
    last = patch(s, url, offset, data[offset:])
    assert last.status_code == 204 and last.headers["L1-Digest"] == hashlib.sha3_256(data).hexdigest()
    assert budget.granted == [8 * MiB, 3 * MiB] and budget.held == 0
    assert s.get(f"{server.url}/cache/{last.headers['L1-Digest']}").content == data


def test_a_small_post_upload_is_held_in_memory_and_a_large_one_is_not(server, dev_l2, monkeypatch):
    """`POST /cache/upload` bodies up to MAX_BODY are held as received too (no temp file before the
    app reads them); a larger one takes waitress's buffer; both store the same bytes."""
    budget = RecordingBudget(64 * MiB)
    monkeypatch.setattr(MemoryBodyParser, "budget", budget)
    s = session(dev_l2, server)
    for data in (os.urandom(3 * MiB), os.urandom(MAX_BODY + 1)):
        answer = s.post(f"{server.url}/cache/upload", data=data, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["digest"] == hashlib.sha3_256(data).hexdigest()
        assert s.get(f"{server.url}/cache/{answer.json()['digest']}").content == data
    assert budget.granted == [3 * MiB]
    wait_until(lambda: budget.held == 0)


def test_a_small_raw_upload_is_hashed_as_it_arrives_and_other_bodies_are_not(server, dev_l2, monkeypatch):
    """Issue 19: a raw `POST /cache/upload` up to 4 MiB is hashed while it is received and the
    store answers that digest; a multipart form, a larger body and a tus PATCH are not."""
    made: list[int] = []
    answered: list[str] = []
    real_init, real_digest = ArrivalHash.__init__, ArrivalHash.hexdigest

    def init(self):
        real_init(self)
        made.append(id(self))

    def hexdigest(self):
        answered.append(digest := real_digest(self))
        return digest

    monkeypatch.setattr(ArrivalHash, "__init__", init)
    monkeypatch.setattr(ArrivalHash, "hexdigest", hexdigest)
    s = session(dev_l2, server)
    small = os.urandom(MiB + 3)
    answer = s.post(f"{server.url}/cache/upload", data=small, headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["digest"] == hashlib.sha3_256(small).hexdigest()
    assert len(made) == 1 and answered == [hashlib.sha3_256(small).hexdigest()]
    assert s.get(f"{server.url}/cache/{answered[0]}").content == small
    form = s.post(f"{server.url}/cache/upload", files={"file": ("a.bin", os.urandom(MiB))})
    large = os.urandom(5 * MiB)
    bigger = s.post(f"{server.url}/cache/upload", data=large, headers={"Content-Type": "application/octet-stream"})
    url = create(s, server, MiB)
    patch = s.patch(url, data=os.urandom(MiB), headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                                        "Content-Type": "application/offset+octet-stream"})
    assert form.status_code == 201 and bigger.status_code == 201 and patch.status_code == 204, patch.text
    assert bigger.json()["digest"] == hashlib.sha3_256(large).hexdigest()
    assert len(made) == 1 and len(answered) == 1


def test_a_small_upload_cut_off_while_hashed_on_arrival_stores_nothing_and_gives_its_memory_back(
        server, dev_l2, monkeypatch):
    budget = RecordingBudget(64 * MiB)
    monkeypatch.setattr(MemoryBodyParser, "budget", budget)
    made: list[ArrivalHash] = []
    real_init = ArrivalHash.__init__

    def init(self):
        real_init(self)
        made.append(self)

    monkeypatch.setattr(ArrivalHash, "__init__", init)
    token = dev_l2.mint("alice", server.url)
    part = os.urandom(MiB)
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(f"POST /cache/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: {3 * MiB}\r\n\r\n".encode() + part)
        wait_until(lambda: bool(made) and made[0].size == MiB, timeout=30)
    wait_until(lambda: gc.collect() >= 0 and budget.held == 0, timeout=30)
    s = session(dev_l2, server)
    assert s.get(f"{server.url}/cache/{hashlib.sha3_256(part).hexdigest()}").status_code == 404
    assert s.get(f"{server.url}/cache", headers={"Accept": "application/json"}).json()["total"] == 0


def test_small_uploads_hashed_on_arrival_side_by_side_each_get_their_own_digest(server, dev_l2):
    """Ten clients uploading at once share the kept hashing threads; each body is hashed alone, in order."""
    bodies = [os.urandom(MiB + 4099 * index) for index in range(30)]
    answers: dict[int, str] = {}

    def client(indexes: range) -> None:
        s = session(dev_l2, server)
        for index in indexes:
            answer = s.post(f"{server.url}/cache/upload", data=bodies[index],
                            headers={"Content-Type": "application/octet-stream"})
            answers[index] = answer.json()["digest"] if answer.status_code == 201 else answer.text

    threads = [threading.Thread(target=client, args=(range(start, 30, 10),)) for start in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {index: hashlib.sha3_256(body).hexdigest() for index, body in enumerate(bodies)}


def test_arrival_hashing_keeps_the_pieces_in_order_and_the_store_checks_its_size(store):
    pieces = [os.urandom(size) for size in (1, 70_000, 3, 200_000, 0, 65_536) * 20]
    arrival = ArrivalHash()
    for piece in pieces:
        arrival.add(piece)
    whole = b"".join(pieces)
    assert arrival.size == len(whole) and arrival.hexdigest() == hashlib.sha3_256(whole).hexdigest()
    # A digest of another number of bytes than those written is not taken: the writer hashes them.
    other = ArrivalHash()
    other.add(b"a body cut short")
    writer = store.writer(None)
    writer.arrived = other
    writer.write(b"these bytes!!!!")
    stored = store.commit(writer, source="test")
    assert stored.digest == hashlib.sha3_256(b"these bytes!!!!").hexdigest()


def test_a_body_cut_off_half_way_gives_its_reservation_back(server, dev_l2, monkeypatch):
    budget = RecordingBudget(64 * MiB)
    monkeypatch.setattr(MemoryBodyParser, "budget", budget)
    token = dev_l2.mint("alice", server.url)
    url = create(session(dev_l2, server), server, 8 * MiB)
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(f"PATCH {url.split(server.url)[1]} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                     f"Upload-Offset: 0\r\nContent-Length: {8 * MiB}\r\n\r\n".encode() + os.urandom(MiB))
        wait_until(lambda: budget.granted == [8 * MiB], timeout=30)
    wait_until(lambda: gc.collect() >= 0 and budget.held == 0, timeout=30)
    assert head_offset(session(dev_l2, server), url) == 0


def test_a_memory_body_reads_like_a_file():
    budget = Budget(100)
    body = MemoryBody(10, budget)
    assert budget.reserve(10) and budget.held == 10
    for piece in (b"abc", b"", b"defg", b"hij"):
        body.append(piece)
    assert len(body) == 10
    reader = body.getfile()
    buffer = bytearray(4)
    got = []
    while count := reader.readinto(buffer):
        got.append(bytes(buffer[:count]))
    assert got == [b"abcd", b"efgh", b"ij"] and reader.read() == b""
    again = MemoryBody(6, budget)
    budget.reserve(6)
    again.append(b"012345")
    assert again.getfile().read(2) == b"01" and again.getfile().read() == b"2345"  # one body, read once
    body.close()
    body.close()  # closing twice gives back once
    assert budget.held == 6
    del again
    gc.collect()
    assert budget.held == 0


def test_hashing_chained_behind_unfinished_hashing_keeps_the_order():
    """Each PATCH's Hashing may still run when the next starts (`after`): chunks are hashed in
    the order given, however small the PATCHes, and at most two Hashings are unfinished."""
    hasher = hashlib.sha3_256()
    pieces = [os.urandom(POOL_BUFFER // 3) for _ in range(12)]
    previous = None
    chain = []
    for group in (pieces[0:1], pieces[1:5], pieces[5:6], pieces[6:7], pieces[7:12]):
        hashing = Hashing(hasher, after=previous)
        assert all(not h.running for h in chain[:-1])  # the one before the previous is done
        for piece in group:
            buffer = take_buffer()
            buffer[:len(piece)] = piece
            hashing.update(buffer, len(piece))
        hashing.close()
        chain.append(hashing)
        previous = hashing
    previous.wait()
    assert hasher.hexdigest() == hashlib.sha3_256(b"".join(pieces)).hexdigest()
