"""The content store's fetcher (`l1web/store/remote.py`): a single-host run never calls into `l1web.ipfs`.

A real worker process runs with `l1web.ipfs` made unimportable (`sys.modules["l1web.ipfs"] = None`,
inherited by every work horse it forks): a two-step run on one host with IPFS off completes. The
control turns IPFS on in the same guarded worker, which then cannot start: the guard is known to bite.
"""

from __future__ import annotations

import redis

from l1web.clients import Clients
from l1web.devtools.processes import python_process, stop_process
from l1web.runs.model import RunStatus, StepStatus
from l1web.store.remote import L1Server
from tests.helpers import put_image
from tests.test_runs_workers import SHARED_STEP, submit_recipe, wait_for_run

#: A worker whose process (and its forked work horses) cannot import anything under l1web.ipfs.
GUARDED_WORKER = """
import sys
sys.modules["l1web.ipfs"] = None  # any `import l1web.ipfs...` now raises ImportError
from l1web.worker import main
main()
"""


def _guarded_worker(worker_env, tmp_path, **env):
    return python_process(["-c", GUARDED_WORKER], {**worker_env, **env}, log=tmp_path / "guarded-worker.log")


def test_a_single_host_run_with_ipfs_off_never_touches_ipfs(service, state, store, worker_env, tmp_path):
    digest = put_image(store, tmp_path)
    worker = _guarded_worker(worker_env, tmp_path, IPFS_API="")
    try:
        run = wait_for_run(state, submit_recipe(service, state, SHARED_STEP, {"image": digest})["id"])
    finally:
        stop_process(worker)
    log = (tmp_path / "guarded-worker.log").read_text()
    assert run["status"] == RunStatus.COMPLETED, (run.get("error"), log[-2000:])
    steps = state.runs.step_states(run["id"])
    assert {sid: s["status"] for sid, s in steps.items()} == {
        "image": StepStatus.CACHED, "inverted": StepStatus.COMPLETED, "grey": StepStatus.COMPLETED}
    assert "l1web.ipfs" not in log


def test_the_guard_bites_when_ipfs_is_on(worker_env, tmp_path):
    """Control: with IPFS_API set, the same guarded worker cannot even build its clients."""
    worker = _guarded_worker(worker_env, tmp_path, IPFS_API="http://127.0.0.1:9")
    try:
        assert worker.wait(60) != 0
    finally:
        stop_process(worker)
    assert "l1web.ipfs" in (tmp_path / "guarded-worker.log").read_text()


def test_the_fetcher_follows_the_settings(settings, state, store, redis_url):
    connection = redis.Redis.from_url(redis_url)
    single = Clients(settings.with_changes(ipfs_api="", l1_server_url="", worker_token=""), state, store,
                     connection).remote
    assert single.sources == () and single.peers is None and single.server is None
    assert not single.has("f" * 64) and single.peer_result("f" * 64) is None
    remote = Clients(settings.with_changes(ipfs_api="", l1_server_url="http://l1.invalid", worker_token="t"),
                     state, store, connection).remote
    assert isinstance(remote.server, L1Server) and remote.sources == (remote.server,) and remote.peers is None
    both = Clients(settings.with_changes(ipfs_api="http://127.0.0.1:9", l1_server_url="http://l1.invalid",
                                         worker_token="t"), state, store, connection).remote
    assert [source.name for source in both.sources] == ["IPFS", "L1"] and both.peers is not None
