"""IPFS and IPNS sync against a real js-ipfs node (npm `ipfs` 0.66.1), started once per session.

The node runs offline on loopback with its repo in the session's tmp dir. Two L1 "nodes" are two
Redis databases with their own cache directories and their own IPNS keys on that one IPFS node
(offline js-ipfs nodes cannot reach each other; docs/ipfs.md says what differs with real peers).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from l1web.clients import Clients
from l1web.devtools.processes import free_port, python_process, stop_process, wait_for
from l1web.ipfs import daemon as ipfs_daemon
from l1web.ipfs.client import IPFSClient, IPFSError, api_base
from l1web.ipfs.pinning import canonical_bytes
from l1web.ipfs.sync import DOC_FORMAT, SyncTask, validate_document
from l1web.jobs.queues import run_service
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import RunService, Submission
from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore
from l1web.store.names import new_hasher
from l1web.users import User

ALICE = User("alice")
RUN_WAIT = 120
#: Redis database of the second L1 node in two-node tests.
NODE_B_DB = 6


def sha3(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


@pytest.fixture(scope="session")
def ipfs(tmp_path_factory: pytest.TempPathFactory):
    assert ipfs_daemon.available(), "js-ipfs missing: run `npm install` (package.json pins ipfs 0.66.1)"
    root = tmp_path_factory.mktemp("ipfs")
    node = ipfs_daemon.IPFSDaemon(root / "repo", log=root / "daemon.log").start()
    yield node
    node.stop()


@pytest.fixture()
def client(ipfs) -> IPFSClient:
    return ipfs.client(timeout=10)


@pytest.fixture()
def settings(settings, ipfs):
    """Node A: the usual test settings with IPFS on."""
    return settings.with_changes(ipfs_api=ipfs.api, ipfs_timeout=10, ipns_key="node-a", ipns_sync_interval=1)


@dataclass
class Node:
    settings: Settings
    state: StateManager
    store: ContentStore
    service: RunService

    @classmethod
    def make(cls, settings: Settings, state: StateManager) -> Node:
        store = ContentStore(settings.cache_dir, state.cache)
        return cls(settings, state, store, run_service(state, store, connect(settings.redis_url, decode=False)))

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.settings.redis_url, "CACHE_DIR": str(self.settings.cache_dir),
                "IPFS_API": self.settings.ipfs_api, "IPFS_TIMEOUT": "10"}

    def sync(self, client: IPFSClient | None = None) -> SyncTask:
        return SyncTask(self.settings, self.state, self.store, client)


@pytest.fixture()
def node_a(settings, state) -> Node:
    return Node.make(settings, state)


@pytest.fixture()
def node_b(settings, redis_server, tmp_path) -> Node:
    url = f"{redis_server.url}/{NODE_B_DB}"
    client = connect(url)
    client.flushdb()
    own = settings.with_changes(redis_url=url, cache_dir=tmp_path / "cache-b", data_dir=tmp_path / "data-b",
                                ipns_key="node-b")
    return Node.make(own, StateManager(client))


def _remote(node: Node):
    """The fetcher a worker process of `node` gets from the composition root (IPFS on)."""
    return Clients(node.settings, node.state, node.store, connect(node.settings.redis_url, decode=False)).remote


def put_image(store: ContentStore, tmp_path: Path, seed: int = 3) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / f"in{seed}.png"
    Image.fromarray(pixels).save(path)
    return store.put_file(path, source="test")


def wait_for_run(state: StateManager, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_WAIT
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id[:12]} still live: {state.runs.step_states(run_id)}")


def wait_published(node: Node, run_id: str) -> dict:
    """The run's IPFS record: the worker adds the outputs just after marking the run completed."""
    index = node.state.ipfs
    wait_for(lambda: index.run(run_id), timeout=60, what="the run's outputs in IPFS")
    return index.run(run_id)


TWO_STEPS = """
name: two-steps
dag:
  nodes:
    - {id: image, type: SOURCE, config: {input: true, name: image}}
    - {id: neg, type: EFFECT, config: {effect: invert}, inputs: [image]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [neg]}
  output: grey
"""


def submit_two_steps(node: Node, digest: str) -> dict:
    from l1web.recipes.parse import parse_recipe

    recipe = parse_recipe(TWO_STEPS)
    node.state.recipes.save(recipe.id, name=recipe.name, owner="alice", yaml_text=TWO_STEPS, recipe=recipe.to_dict())
    run, _ = node.service.submit(Submission(recipe.id, {"image": digest}), ALICE)
    return run


# The RPC client against the real node -----------------------------------------------------------
def test_add_cat_and_pin_round_trip(client):
    data = b"L1 IPFS round trip " + bytes(range(256)) * 64
    cid = client.add(data)
    assert cid.startswith("Qm")  # CIDv0, as Kubo prints by default
    assert client.cat(cid) == data
    assert cid in client.pins()
    assert client.add(data) == cid  # content addressed: the same bytes, the same CID


def test_keys_and_ipns_publish_resolve(client):
    name = client.key_id("test-key")
    assert name == client.key_id("test-key")  # generated once, then listed (js-ipfs lists keys twice)
    assert list(client.key_list()).count("test-key") == 1
    cid = client.add(b"first version")
    assert client.name_publish(cid, key="test-key") == name
    assert client.name_resolve(name) == cid
    newer = client.add(b"second version")
    client.name_publish(newer, key="test-key")
    assert client.name_resolve(f"/ipns/{name}") == newer


def test_a_missing_cid_fails_after_the_timeout_naming_the_call(client):
    unknown = "QmPnnvFkvSCmPvMdMtSNbXrFWQX5XYc4YkcVU4cujyyH8Z"
    with pytest.raises(IPFSError, match=r"IPFS cat .*(timed out|failed)"):
        client.cat(unknown, timeout=1)


def test_an_unreachable_node_gives_a_clear_error():
    dead = IPFSClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(IPFSError, match="IPFS version failed: ConnectionError"):
        dead.version()
    with pytest.raises(IPFSError, match="IPFS add failed"):
        dead.add(b"x")


def test_ipfs_api_accepts_urls_and_multiaddrs():
    assert api_base("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001"
    assert api_base("http://ipfs:5001/api/v0/") == "http://ipfs:5001"
    assert api_base("/dns/ipfs/tcp/5001") == "http://ipfs:5001"
    with pytest.raises(ValueError, match="IPFS_API"):
        api_base("ipfs:5001")


def test_settings_read_the_ipfs_variables():
    env = {"IPFS_API": "/ip4/127.0.0.1/tcp/5001", "IPNS_SYNC_INTERVAL": "30", "IPNS_PEERS": "12D3KooWa, 12D3KooWb",
           "IPNS_KEY": "me", "IPFS_DAEMON": "1", "WORKER_TOKEN": "t", "L1_SERVER_URL": "http://l1:8100/"}
    s = Settings.from_env(env)
    assert (s.ipfs_api, s.ipns_sync_interval, s.ipns_peers, s.ipns_key, s.ipfs_daemon) == (
        "/ip4/127.0.0.1/tcp/5001", 30.0, ("12D3KooWa", "12D3KooWb"), "me", True)
    assert (s.worker_token, s.l1_server_url) == ("t", "http://l1:8100")
    assert Settings.from_env({}).ipns_sync_interval == 0 and not Settings.from_env({}).ipfs_api


# Run outputs added and pinned -------------------------------------------------------------------
def test_a_completed_run_is_added_and_pinned_with_its_provenance(node_a, client, start_worker, tmp_path,
                                                                 alice_client):
    digest = put_image(node_a.store, tmp_path)
    start_worker(env=node_a.env)
    run = wait_for_run(node_a.state, submit_two_steps(node_a, digest)["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    index = node_a.state.ipfs
    record = wait_published(node_a, run["id"])
    assert record["output_hash"] == run["output_hash"]
    assert sha3(client.cat(record["output_cid"])) == run["output_hash"]  # the CID holds exactly those bytes
    assert json.loads(client.cat(record["provenance_cid"])) == run["provenance"]
    assert {record["output_cid"], record["provenance_cid"]} <= client.pins()
    states = node_a.state.runs.step_states(run["id"])
    assert index.results() == {s["cache_id"]: states[s["step_id"]]["output"]
                               for s in node_a.state.runs.steps(run["id"]) if s["type"] != "SOURCE"}
    assert index.cid(digest) and index.pending() == []

    meta = alice_client.get(f"/cache/{run['output_hash']}/meta").json
    assert meta["ipfs_cid"] == record["output_cid"]
    download = alice_client.get(f"/cache/{run['output_hash']}")
    download.close()
    assert download.headers["X-Ipfs-Path"] == f"/ipfs/{record['output_cid']}"
    page = alice_client.get(f"/run/{run['id']}").get_data(as_text=True)
    assert record["output_cid"] in page and record["provenance_cid"] in page


def test_ipfs_down_never_fails_a_run_and_the_sync_task_adds_it_later(node_a, client, start_worker, tmp_path):
    digest = put_image(node_a.store, tmp_path, seed=5)
    start_worker(env={**node_a.env, "IPFS_API": f"http://127.0.0.1:{free_port()}"})
    run = wait_for_run(node_a.state, submit_two_steps(node_a, digest)["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    index = node_a.state.ipfs
    wait_for(lambda: index.pending() == [run["id"]], timeout=30, what="the failed add to be queued")
    assert index.cid(run["output_hash"]) is None and index.run(run["id"]) is None

    status = node_a.sync(client).once()
    assert status["pending"] == 0 and index.pending() == []
    assert sha3(client.cat(index.cid(run["output_hash"]))) == run["output_hash"]


# IPNS sync between two L1 nodes ----------------------------------------------------------------
def test_a_step_a_peer_rendered_is_fetched_not_rendered(node_a, node_b, client, start_worker, tmp_path):
    digest_a = put_image(node_a.store, tmp_path, seed=9)
    digest_b = put_image(node_b.store, tmp_path, seed=9)
    assert digest_a == digest_b
    start_worker(env=node_a.env)
    run_a = wait_for_run(node_a.state, submit_two_steps(node_a, digest_a)["id"])
    assert run_a["status"] == RunStatus.COMPLETED, run_a.get("error")
    wait_published(node_a, run_a["id"])

    sync_a = node_a.sync(client)
    published = sync_a.once()
    assert published["published"] is True and published["state"] == "ok"
    assert sync_a.once()["published"] is False  # nothing changed: not published again (coalescing)
    name_a = published["name"]
    assert name_a.startswith("12D3KooW")

    peer_settings = node_b.settings.with_changes(ipns_peers=(name_a,))
    node_b = Node(peer_settings, node_b.state, node_b.store, node_b.service)
    status_b = node_b.sync(client).once()
    assert status_b["peers"][name_a]["ok"] is True and status_b["peers"][name_a]["new"] == 2
    stored = node_b.state.ipfs.status()
    assert stored["state"] == "ok" and json.loads(stored["peers"])[name_a]["ok"] is True

    start_worker(env=node_b.env)
    run_b = wait_for_run(node_b.state, submit_two_steps(node_b, digest_b)["id"])
    assert run_b["status"] == RunStatus.COMPLETED, run_b.get("error")
    assert run_b["output_hash"] == run_a["output_hash"]
    statuses = {sid: s["status"] for sid, s in node_b.state.runs.step_states(run_b["id"]).items()}
    assert statuses == {"image": StepStatus.CACHED, "neg": StepStatus.CACHED, "grey": StepStatus.CACHED}
    assert node_b.state.cache.stats().get("cache_misses", 0) == 0  # nothing rendered on node B
    assert node_b.store.path_for(run_b["output_hash"])  # verified bytes in B's own cache


def test_a_lying_peer_entry_is_dropped_and_nothing_enters_the_cache(node_b, client):
    truthful = b"what the CID really holds"
    claimed = sha3(b"what the peer claims it holds")
    cache_id = "c" * 64
    index = node_b.state.ipfs
    index.merge_peer("liar", "{}", {cache_id: {"digest": claimed, "cid": client.add(truthful)}}, {})
    assert _remote(node_b).peer_result(cache_id) is None
    assert index.remote_result(cache_id) is None  # dropped, not retried
    assert not node_b.store.has(claimed) and node_b.state.results.get_result(cache_id) is None
    assert list(node_b.store.tmp.iterdir()) == []


def test_a_peer_never_overwrites_local_truth(node_b, client):
    index = node_b.state.ipfs
    mine, theirs = b"our bytes", b"the peer's bytes"
    local_digest, peer_digest = sha3(mine), sha3(theirs)
    index.set_cid(local_digest, client.add(mine))
    cache_id = "d" * 64
    node_b.state.results.set_result(cache_id, local_digest)
    index.merge_peer("peer", "{}", {cache_id: {"digest": peer_digest, "cid": client.add(theirs)}},
                     {local_digest: client.add(theirs)})
    assert index.cid(local_digest) == client.add(mine)
    assert _remote(node_b).peer_result(cache_id) == peer_digest  # verified, so usable for this step...
    assert node_b.state.results.get_result(cache_id) == local_digest  # ...but our record stays ours


def test_peer_documents_are_validated_entry_by_entry(client, node_b):
    good = {"digest": "a" * 64, "cid": "Qm" + "x" * 44}
    results, cids = validate_document({"format": DOC_FORMAT, "results": {
        "b" * 64: good, "not-a-hash": good, "c" * 64: {"digest": "short", "cid": good["cid"]},
        "d" * 64: {"digest": "a" * 64, "cid": "has spaces and/slashes"}}, "cids": {"a" * 64: good["cid"], "x": "y"}})
    assert results == {"b" * 64: good} and cids == {"a" * 64: good["cid"]}
    for junk in (None, [], {"format": "other"}, "text"):
        with pytest.raises(ValueError, match=DOC_FORMAT):
            validate_document(junk)
    name = client.key_id("garbage-peer")
    client.name_publish(client.add(b"this is not json"), key="garbage-peer")
    report = node_b.sync(client).read_peer(name)
    assert report["ok"] is False and report["error"]


def test_the_sync_backs_off_and_reports_failures(node_b):
    dead = IPFSClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    task = SyncTask(node_b.settings.with_changes(ipns_sync_interval=0.05), node_b.state, node_b.store, dead)
    thread = threading.Thread(target=task.run_forever, daemon=True)
    thread.start()
    index = node_b.state.ipfs
    try:
        wait_for(lambda: int(index.status().get("failures", 0)) >= 2, timeout=30, what="two failed attempts")
    finally:
        task.stop.set()
        thread.join(10)
    status = index.status()
    assert status["state"] == "error" and "IPFS key/list failed" in status["last_error"]
    assert float(status["next_attempt"]) > float(status["last_attempt"])


def test_the_sync_process_publishes_this_nodes_document(node_a, client, tmp_path):
    env = {**node_a.env, "IPNS_SYNC_INTERVAL": "0.5", "IPNS_KEY": "process-node", "DATA_DIR": str(tmp_path)}
    proc = python_process(["-m", "l1web.ipfs.sync"], env, log=tmp_path / "sync.log")
    index = node_a.state.ipfs
    try:
        wait_for(lambda: index.status().get("state") == "ok", timeout=60, what="the sync process")
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    status = index.status()
    document = json.loads(client.cat(client.name_resolve(status["name"])))
    assert document["format"] == DOC_FORMAT and document["node"] == status["name"]
    assert client.name_resolve(status["name"]) == status["published_cid"]


def test_the_document_is_canonical_json(node_a):
    from l1web.ipfs.sync import build_document

    doc = build_document(node_a.state, node_a.state.ipfs)
    assert doc == {"format": DOC_FORMAT, "cids": {}, "results": {}, "runs": {}, "configs": {}}
    assert canonical_bytes(doc) == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_ipfs_off_leaves_runs_alone(settings, redis_client):
    ctx = SimpleNamespace(settings=settings.with_changes(ipfs_api=""), state=StateManager(redis_client), store=None)
    from l1web.ipfs import pinning

    pinning.after_run(ctx, "r" * 64)  # no IPFS: nothing written, nothing raised
    assert redis_client.keys("artdag:ipfs:*") == []
