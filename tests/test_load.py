"""Load, bounded: the real stack (app.py under waitress, 2 RQ workers, redis-server, dev L2)
under concurrent asyncio clients for about 10 s. Nothing answers 5xx, no run is lost or stuck.

Latencies are printed for the log, never asserted: this machine is shared. The full-size load
(200 + 50 clients, 60 s) is `bench/bench_load.py`; docs/load.md has its numbers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
import requests

from bench.loadgen import LIVE, NON_RENDER_KINDS, Profile, Stack, png_bytes, run_async, run_load
from l1web.errors import NotFound
from l1web.jobs import queues
from l1web.paths import ROOT
from l1web.runs.service import RunService, Submission
from l1web.state import connect, keys
from l1web.store import ContentStore
from l1web.users import User

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Seconds every run gets to become final after the load: generous, the machine is shared.
DRAIN = 300.0


def summary(report: dict) -> str:
    lines = [f"{kind}: {s['requests']} requests, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, {s['statuses']}"
             for kind, s in report["load"]["kinds"].items()]
    return "\n".join([*lines, json.dumps(report["runs"]), json.dumps(report["load"]["examples"])[:2000]])


def test_concurrent_uploads_runs_and_polls_never_5xx_and_every_run_finishes(tmp_path):
    profile = Profile(submitters=30, pollers=10, floor_clients=1, duration=10, think=(2.0, 4.0), drain=DRAIN,
                      users=5, capacity_seconds=0, env={"RUN_RATE_LIMIT": "100000"})
    report = run_load(profile, tmp_path)
    print(summary(report))
    load, runs = report["load"], report["runs"]
    assert load["5xx"] == 0, summary(report)
    assert load["transport_failures"] == 0, summary(report)
    assert load["4xx"] == 0 and load["429"] == 0, summary(report)
    for kind in NON_RENDER_KINDS:
        assert load["kinds"][kind]["requests"] > 0, f"no {kind} request was made"
    assert runs["runs"] >= profile.submitters, "every submitter submits at least one run"
    assert runs["lost"] == 0 and runs["stuck"] == 0, summary(report)
    assert runs["finals"] == {"completed": runs["runs"]}, summary(report)
    assert runs["unacknowledged"] == 0, summary(report)
    assert report["drain_http"]["5xx"] == 0
    assert report["tracebacks"] == {"web": 0, "worker-0": 0, "worker-1": 0}


def test_rate_limited_submissions_answer_429_and_start_nothing(tmp_path):
    """With the default per-address limit shared by every client, extra runs are refused, not lost."""
    limit = 5
    profile = Profile(submitters=12, pollers=2, floor_clients=1, duration=6, think=(0.5, 1.0), drain=DRAIN,
                      users=3, capacity_seconds=0, env={"RUN_RATE_LIMIT": str(limit), "RUN_RATE_BURST": str(limit)})
    report = run_load(profile, tmp_path)
    submits = report["load"]["kinds"]["submit"]["statuses"]
    assert submits.get("429", 0) > 0, summary(report)
    assert report["load"]["5xx"] == 0 and report["load"]["transport_failures"] == 0, summary(report)
    runs = report["runs"]
    # The bucket holds `limit` and gains `limit` a minute: over this short load, well under twice the limit.
    assert 0 < runs["runs"] == submits.get("201", 0) <= 2 * limit
    assert runs["unacknowledged"] == 0, "a refused submission must not leave a run behind"
    assert runs["lost"] == 0 and runs["stuck"] == 0 and runs["finals"] == {"completed": runs["runs"]}


def test_a_worker_imports_the_job_modules_before_it_forks_a_job():
    """RQ forks the worker for every job; whatever the worker has not imported, each job imports."""
    code = (
        "import sys\n"
        "from l1web.worker import preload\n"
        "assert 'l1web.jobs.runs' not in sys.modules\n"
        "preload()\n"
        "from l1web.runs import provenance\n"
        "assert 'l1web.jobs.runs' in sys.modules and 'scipy.ndimage' in sys.modules\n"
        "assert provenance.infrastructure.cache_info().currsize == 1\n"
        "assert provenance.tool_versions()['ffmpeg']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


# Races the load probes found ------------------------------------------------------------------
def test_a_run_whose_input_is_deleted_mid_submit_is_refused_and_leaves_nothing(settings, state, redis_client):
    store = ContentStore(settings.cache_dir, state.cache)
    digest = store.put_bytes(png_bytes(7), source="upload", owner="alice").digest
    rq = connect(settings.redis_url, decode=False)
    service = RunService(state, store, rq, functools.partial(queues.enqueue_plan, rq))
    before = set(redis_client.keys("artdag:run*"))
    # A DELETE /cache/<hash> landing mid-submit: after the input was checked, before the run is written.
    with pytest.raises(NotFound):
        service.submit(Submission("invert", [digest]), User("alice"), admit=lambda: store.delete(digest))
    assert set(redis_client.keys("artdag:run*")) == before, "no run may be written"
    assert redis_client.llen("rq:queue:runs") == 0
    assert state.cache.refs(digest) == set()


def test_submitting_and_deleting_the_same_upload_at_once_never_strands_a_run(tmp_path):
    """Over HTTP: either the delete wins (the submit is a 404) or the run does (the delete a 409)."""

    async def race(stack: Stack, token: str) -> list[tuple[int, int]]:
        headers = {"Authorization": f"Bearer {token}"}
        outcomes = []
        async with aiohttp.ClientSession(headers=headers) as http:
            for seed in range(RACES):
                async with http.post(f"{stack.url}/cache/upload", data=png_bytes(seed)) as answer:
                    digest = (await answer.json())["digest"]
                submit = http.post(f"{stack.url}/runs", json={"recipe": "invert", "inputs": [digest]})
                delete = http.delete(f"{stack.url}/cache/{digest}")
                answers = await asyncio.gather(submit, delete)
                outcomes.append(tuple(a.status for a in answers))
                for answer in answers:
                    answer.release()
        return outcomes

    with Stack(tmp_path, env={"RUN_RATE_LIMIT": "100000"}) as stack:
        token = stack.mint("alice")
        outcomes = run_async(race(stack, token))
        assert set(outcomes) <= {(201, 409), (404, 200)}, outcomes
        runs = sum(1 for submitted, _ in outcomes if submitted == 201)
        final = wait_until_final(stack, token, runs)
        assert len(final) == runs and set(final.values()) <= {"completed"}, final


#: Upload/submit/delete races run over HTTP.
RACES = 30


def wait_until_final(stack: Stack, token: str, expected: int, timeout: float = DRAIN) -> dict[str, str]:
    """Every run the API lists for the user, once none is pending or running: id → status."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(f"{stack.url}/runs", params={"limit": 200}, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        statuses = {run["id"]: run["status"] for run in answer.json()["runs"]}
        if len(statuses) >= expected and not set(statuses.values()) & LIVE or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def test_concurrent_first_requests_with_one_token_ask_l2_once(tmp_path):
    """Ten requests at once with each of eight fresh tokens: 8 L2 calls, not 80 (and no 429s:
    80 calls would pass the per-address sign-in limit of 30 a minute)."""
    users, each = 8, 10

    async def first_requests(stack: Stack, tokens: list[str]) -> list[int]:
        async with aiohttp.ClientSession() as http:
            async def whoami(token: str) -> int:
                async with http.get(f"{stack.url}/auth/whoami", headers={"Authorization": f"Bearer {token}"}) as a:
                    await a.read()
                    return a.status

            return await asyncio.gather(*(whoami(token) for token in tokens for _ in range(each)))

    with Stack(tmp_path, workers=0) as stack:
        tokens = [stack.mint(f"user{index}") for index in range(users)]
        statuses = run_async(first_requests(stack, tokens))
        client = connect(stack.env["REDIS_URL"])
        verifications = sum(int(client.get(key)) for key in client.scan_iter(keys.rate("verify:*")))
    assert statuses == [200] * users * each
    assert verifications == users


class SlowL2(BaseHTTPRequestHandler):
    """An L2 that takes longer than L1 waits; counts the verify calls it gets."""

    calls = 0
    delay = 2.0

    def do_POST(self):
        type(self).calls += 1
        time.sleep(self.delay)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_concurrent_requests_with_one_token_share_a_slow_l2s_timeout(tmp_path):
    """With L2 slow, requests with one token fail together after one timeout (504), rather than
    each asking L2 in turn and waiting out the timeout once more."""
    l2_server = ThreadingHTTPServer(("127.0.0.1", 0), SlowL2)
    l2_server.daemon_threads = True
    threading.Thread(target=l2_server.serve_forever, daemon=True).start()
    SlowL2.calls = 0
    slow_l2 = f"http://127.0.0.1:{l2_server.server_address[1]}"
    try:
        with Stack(tmp_path, workers=0, env={"L2_SERVER": slow_l2, "L2_TIMEOUT": "1"}) as stack, \
                ThreadPoolExecutor(SAME_TOKEN_REQUESTS) as pool:
            statuses = list(pool.map(lambda _: requests.get(
                f"{stack.url}/auth/whoami", headers={"Authorization": "Bearer header.payload.signature"},
                timeout=60).status_code, range(SAME_TOKEN_REQUESTS)))
    finally:
        l2_server.shutdown()
        l2_server.server_close()
    assert statuses == [504] * SAME_TOKEN_REQUESTS
    # One call when all arrive within the timeout; a straggler on a busy machine may start a second.
    assert SlowL2.calls <= 2 < SAME_TOKEN_REQUESTS


#: Requests sent at once with one token to a server whose L2 is slow (app.py has 8 threads).
SAME_TOKEN_REQUESTS = 6
