"""Workers on several hosts: two worker processes with separate cache directories render one DAG.

Each worker stands for a machine of its own: its own CACHE_DIR, the shared Redis, and the L1
server reached over HTTP (`L1_SERVER_URL` + `WORKER_TOKEN`): inputs it lacks are fetched from
`GET /worker/cache/{hash}` and verified, what it renders is sent back with `PUT`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from rq import Worker

from l1web.devtools.processes import stop_process
from l1web.ipfs.fetch import WORKER_TOKEN_HEADER
from l1web.recipes.parse import parse_recipe
from l1web.runs.model import RunStatus, StepStatus
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.store import ContentStore, names
from l1web.store.names import hash_file
from l1web.users import User

ALICE = User("alice")
TOKEN = "worker-secret-for-tests"
RUN_WAIT = 180

#: Four independent effects on one image, blended pairwise, then together: 7 rendered steps.
FAN_OUT = """
name: fan-out
dag:
  nodes:
    - {id: image, type: SOURCE, config: {input: true, name: image}}
    - {id: ink, type: EFFECT, config: {effect: dog}, inputs: [image]}
    - {id: warm, type: EFFECT, config: {effect: sepia}, inputs: [image]}
    - {id: soft, type: EFFECT, config: {effect: blur}, inputs: [image]}
    - {id: neg, type: EFFECT, config: {effect: invert}, inputs: [image]}
    - {id: mix1, type: BLEND, config: {mode: normal, opacity: 0.5}, inputs: [ink, warm]}
    - {id: mix2, type: BLEND, config: {mode: normal, opacity: 0.5}, inputs: [soft, neg]}
    - {id: final, type: BLEND, config: {mode: normal, opacity: 0.5}, inputs: [mix1, mix2]}
  output: final
"""
RENDERED = 7


@pytest.fixture()
def settings(settings):
    """The L1 server accepts workers holding WORKER_TOKEN."""
    return settings.with_changes(worker_token=TOKEN)


def put_image(store: ContentStore, tmp_path: Path) -> str:
    pixels = np.random.default_rng(7).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "input.png")
    return store.put_file(tmp_path / "input.png", source="test")


def remote_worker(start_worker, live_l1, tmp_path: Path, name: str):
    cache = tmp_path / f"host-{name}"
    env = {"CACHE_DIR": str(cache), "L1_SERVER_URL": live_l1.url, "WORKER_TOKEN": TOKEN}
    return start_worker(name=name, env=env), Host(cache)


class Host:
    """The files of one host's cache directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def location(self, digest: str) -> Path:
        return names.location(self.root, digest)


def wait_for_workers(settings, names: set[str]) -> None:
    conn = connect(settings.redis_url, decode=False)
    deadline = time.monotonic() + 30
    while {w.name for w in Worker.all(connection=conn)} < names:
        assert time.monotonic() < deadline, "workers did not register"
        time.sleep(0.1)


def wait_for_run(state, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_WAIT
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run still live: {state.runs.step_states(run_id)}")


def rendered_by(settings, state, run_id: str) -> dict[str, str]:
    """Step id → name of the worker that rendered it (its last attempt's)."""
    found = {}
    for step_id, step in state.runs.step_states(run_id).items():
        if step["status"] == StepStatus.COMPLETED:
            found[step_id] = step["worker"]
    return found


def test_two_hosts_render_one_dag_together_and_match_a_single_worker(
        settings, state, store, service, start_worker, live_l1, tmp_path):
    digest = put_image(store, tmp_path)
    recipe = parse_recipe(FAN_OUT)
    state.recipes.save(recipe.id, name=recipe.name, owner="alice", yaml_text=FAN_OUT, recipe=recipe.to_dict())
    _, host_a = remote_worker(start_worker, live_l1, tmp_path, "host-a")
    proc_b, host_b = remote_worker(start_worker, live_l1, tmp_path, "host-b")
    wait_for_workers(settings, {"host-a", "host-b"})

    run, _ = service.submit(Submission(recipe.id, {"image": digest}), ALICE)
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")

    # Every step rendered exactly once, and both "hosts" took part.
    states = state.runs.step_states(run["id"])
    assert sorted(s["status"] for s in states.values()) == [StepStatus.CACHED] + [StepStatus.COMPLETED] * RENDERED
    assert state.cache.stats().get("cache_misses") == RENDERED
    workers = rendered_by(settings, state, run["id"])
    assert set(workers.values()) == {"host-a", "host-b"}, workers

    # The input only existed on the L1 server: both hosts fetched it (verified) over HTTP.
    assert host_a.location(digest).is_file() and host_b.location(digest).is_file()
    # Each host holds what it rendered; the server received everything, so it can serve the output.
    for step_id, worker in workers.items():
        host = host_a if worker == "host-a" else host_b
        output = states[step_id]["output"]
        assert host.location(output).is_file()
        assert hash_file(store.path_for(output)) == output
    # A step whose inputs were rendered on the other host got them over HTTP.
    crossed = [sid for sid in ("mix1", "mix2", "final")
               if {workers[dep] for dep in FAN_OUT_INPUTS[sid]} - {workers[sid]}]
    assert crossed, workers
    for sid in crossed:
        host = host_a if workers[sid] == "host-a" else host_b
        assert all(host.location(states[dep]["output"]).is_file() for dep in FAN_OUT_INPUTS[sid])

    # The same DAG on one worker alone gives the same bytes.
    first_output = run["output_hash"]
    stop_process(proc_b)
    service.rerun(run["id"], ALICE, force=True)
    again = wait_for_run(state, run["id"])
    assert again["status"] == RunStatus.COMPLETED, again.get("error")
    assert set(rendered_by(settings, state, run["id"]).values()) == {"host-a"}
    assert again["output_hash"] == first_output


FAN_OUT_INPUTS = {"mix1": ("ink", "warm"), "mix2": ("soft", "neg"), "final": ("mix1", "mix2")}


def test_worker_routes_need_the_token_and_verify_what_they_receive(settings, state, store, live_l1, tmp_path):
    digest = put_image(store, tmp_path)
    # A worker may fetch only what a live run needs (issue 13: a hash is not a key).
    state.runs.create({"id": "d" * 64, "status": RunStatus.RUNNING, "created": 1.0, "owner": "alice",
                       "input_hashes": {"input": digest}})
    url = f"{live_l1.url}/worker/cache/{digest}"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={WORKER_TOKEN_HEADER: "wrong"}, timeout=5).status_code == 401
    good = requests.get(url, headers={WORKER_TOKEN_HEADER: TOKEN}, timeout=5)
    assert good.status_code == 200 and good.content == store.path_for(digest).read_bytes()

    claimed = "0" * 64
    lie = requests.put(f"{live_l1.url}/worker/cache/{claimed}", data=b"not those bytes",
                       headers={WORKER_TOKEN_HEADER: TOKEN, "Accept": "application/json"}, timeout=5)
    assert lie.status_code == 400 and "hash to" in lie.json()["message"]
    assert not store.has(claimed) and not store.location(claimed).exists()
    assert list(store.tmp.iterdir()) == []

    payload = b"an output rendered elsewhere"
    from l1web.store.names import new_hasher

    hasher = new_hasher()
    hasher.update(payload)
    honest = requests.put(f"{live_l1.url}/worker/cache/{hasher.hexdigest()}", data=payload,
                          headers={WORKER_TOKEN_HEADER: TOKEN}, params={"owner": "alice"}, timeout=5)
    assert honest.status_code == 200
    assert store.path_for(hasher.hexdigest()).read_bytes() == payload
    assert store.meta(hasher.hexdigest()).owner == "alice"


def test_worker_routes_do_not_exist_without_a_token(app):
    client = app.test_client()
    answer = client.get(f"/worker/cache/{'a' * 64}", headers={WORKER_TOKEN_HEADER: ""})
    assert answer.status_code == 401  # settings here carry WORKER_TOKEN
    off = app.extensions["l1"].settings.with_changes(worker_token="")
    from l1web.web import create_app

    bare = create_app(off, state=app.extensions["l1"].state).test_client()
    assert bare.get(f"/worker/cache/{'a' * 64}", headers={WORKER_TOKEN_HEADER: ""}).status_code == 404
