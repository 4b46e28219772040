"""Several hosts render one chunked step: two workers in network namespaces of their own (issue 16).

The test makes two namespaces, each joined to this one by a veth pair. A worker runs inside each
with its own cache directory and reaches Redis and the L1 server only over its veth address, as
a worker on another machine would over the network. The only copy of the input is in the L1
server's cache: both workers fetch it over the remote-worker HTTP path, render chunks, send them
back, and one of them joins chunks it did not render. Needs root (CAP_NET_ADMIN) and `ip`; the
test skips, saying so, where namespaces cannot be made.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Worker
from waitress import create_server, wasyncore

from l1web.devtools.processes import free_port, wait_for
from l1web.jobs.queues import run_service
from l1web.paths import ROOT
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import StateManager, connect
from l1web.store import ContentStore, names
from l1web.store.names import hash_file
from l1web.users import User
from l1web.web import create_app
from tests.test_chunks_workers import CHUNK_ENV, CHUNKS, frames_of, put_clip

TOKEN = "worker-secret-for-netns"
RUN_WAIT = 300
#: A /24 of our own for the veth pairs (host side .1, namespace side .2 of each /30).
NET = "10.231.{index}.{host}"


class Host:
    """A network namespace joined to ours by a veth pair: `address` is ours, `inner` is its."""

    def __init__(self, index: int) -> None:
        tag = f"{os.getpid() % 10000}{index}"
        self.ns, self.outer_if, self.inner_if = f"l1c{tag}", f"l1c{tag}o", f"l1c{tag}i"
        self.address, self.inner = NET.format(index=index, host=1), NET.format(index=index, host=2)

    def create(self) -> None:
        for args in (["netns", "add", self.ns],
                     ["link", "add", self.outer_if, "type", "veth", "peer", "name", self.inner_if],
                     ["link", "set", self.inner_if, "netns", self.ns],
                     ["addr", "add", f"{self.address}/30", "dev", self.outer_if],
                     ["link", "set", self.outer_if, "up"],
                     ["-n", self.ns, "addr", "add", f"{self.inner}/30", "dev", self.inner_if],
                     ["-n", self.ns, "link", "set", self.inner_if, "up"],
                     ["-n", self.ns, "link", "set", "lo", "up"]):
            subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.outer_if], check=False, capture_output=True)  # already gone is fine
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)  # already gone is fine


@pytest.fixture()
def hosts() -> Iterator[list[Host]]:
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): network namespaces cannot be made here")
    made = [Host(1), Host(2)]
    try:
        for host in made:
            host.create()
    except subprocess.CalledProcessError as exc:
        for host in made:
            host.destroy()
        pytest.skip(f"network namespaces cannot be made here (needs root/CAP_NET_ADMIN): {exc.stderr.strip()}")
    yield made
    for host in made:
        host.destroy()


@pytest.fixture()
def net_redis(hosts, tmp_path) -> Iterator[int]:
    """A redis-server listening on loopback and on both veth addresses (ours of each pair)."""
    port = free_port()
    binds = " ".join(["127.0.0.1", *(h.address for h in hosts)])
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                             "--bind", binds, "--protected-mode", "no", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    wait_for(client.ping, what=f"redis-server on port {port}")
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def redis_url(net_redis) -> str:
    return f"redis://127.0.0.1:{net_redis}/5"


class NetServer:
    """The L1 app served by waitress on loopback and on every veth address, one port."""

    def __init__(self, app, addresses: list[str], port: int) -> None:
        listen = " ".join(f"{a}:{port}" for a in addresses)
        self.server = create_server(app, listen=listen, threads=4, ident="test")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.task_dispatcher.shutdown()
        # As devl2.testing.LiveServer.stop: close the sockets from inside the serving thread.
        sockets = self.server.map
        server = next(s for s in list(sockets.values()) if hasattr(s, "pull_trigger"))
        server.pull_trigger(lambda: wasyncore.close_all(sockets))
        self.thread.join(5)


def start_in(host: Host, name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(["ip", "netns", "exec", host.ns, sys.executable, "worker.py", "--name", name],
                                cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_two_namespaced_hosts_render_one_chunked_step_together(hosts, net_redis, settings, state: StateManager,
                                                               tmp_path):
    port = free_port()
    settings = settings.with_changes(worker_token=TOKEN, chunk_seconds=3.0, chunk_min_seconds=5.0)
    server = NetServer(create_app(settings, state=state), ["127.0.0.1", *(h.address for h in hosts)], port)
    workers: list[subprocess.Popen] = []
    try:
        store = ContentStore(settings.cache_dir, state.cache)
        clip = put_clip(store, tmp_path)
        caches = {}
        for index, host in enumerate(hosts):
            name = f"host-{'ab'[index]}"
            caches[name] = tmp_path / f"cache-{name}"
            env = {**CHUNK_ENV, "REDIS_URL": f"redis://{host.address}:{net_redis}/5",
                   "CACHE_DIR": str(caches[name]), "DATA_DIR": str(tmp_path / f"data-{name}"),
                   "L1_SERVER_URL": f"http://{host.address}:{port}", "WORKER_TOKEN": TOKEN,
                   "SECRET_KEY": "x", "WORKER_MAINTENANCE": "2"}
            workers.append(start_in(host, name, env, tmp_path / f"{name}.log"))
        conn = connect(settings.redis_url, decode=False)
        deadline = time.monotonic() + 60
        while {w.name for w in Worker.all(connection=conn)} != set(caches):
            assert time.monotonic() < deadline, [p.read_text() for p in tmp_path.glob("host-*.log")]
            time.sleep(0.2)
        for worker in Worker.all(connection=conn):  # each reached Redis from its own namespace
            assert worker.ip_address.split(":")[0] in {h.inner for h in hosts}, worker.ip_address

        service = run_service(state, store, conn)
        run, _ = service.submit(Submission("dog", [clip]), User("alice"))
        deadline = time.monotonic() + RUN_WAIT
        while RunStatus(state.runs.get(run["id"])["status"]).live:
            assert time.monotonic() < deadline, state.runs.step_states(run["id"])
            time.sleep(0.2)
        run = state.runs.get(run["id"])
        assert run["status"] == RunStatus.COMPLETED, run.get("error")

        states = state.runs.step_states(run["id"])
        by = {sid: states[sid]["worker"] for sid in [*CHUNKS, "dog"]}  # its last attempt's worker
        assert {by[c] for c in CHUNKS} == set(caches), by  # both hosts rendered chunks
        joiner = by["dog"]
        assert any(by[c] != joiner for c in CHUNKS), by  # the join used chunks sent over HTTP
        # The input existed only on the server: each host fetched it (verified) over HTTP.
        for cache in caches.values():
            assert hash_file(names.location(cache, clip)) == clip
        # The output came back to the server whole and is the full clip.
        output = store.path_for(run["output_hash"])
        assert hash_file(output) == run["output_hash"] and frames_of(output) == 12 * 25
        assert names.location(caches[joiner], run["output_hash"]).is_file()
        # The chunks are gone from every host and from the server.
        chunk_digests = [states[c]["output"] for c in CHUNKS]
        assert all(state.removed_chunks.contains(d) for d in chunk_digests)
        deadline = time.monotonic() + 30
        while True:
            left = [(where, d[:12]) for where, root in [("server", settings.cache_dir), *caches.items()]
                    for d in chunk_digests if names.location(root, d).exists()]
            if not left:
                break
            assert time.monotonic() < deadline, f"chunk copies left behind: {left}"
            time.sleep(0.5)
        assert all(states[c]["status"] == StepStatus.COMPLETED for c in CHUNKS)
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        server.stop()
