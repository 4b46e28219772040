"""Operators' surface: health, readiness, metrics, the RQ dashboard, the status page, the logs.

Everything runs against the real redis-server and real `python worker.py` processes; readiness
gets a redis-server of its own so that stopping it leaves the session's alone.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.serializers import JSONSerializer
from test_browser_signin import CHROMIUM_ARGS

from l1web.devtools.processes import RedisServer
from l1web.state import StateManager, connect, keys
from l1web.web import create_app
from tests.helpers import put_fresh_image as put_image
from tests.helpers import wait_until

#: Seconds a test waits for a run (or a worker) before failing.
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}
#: Pages and data only admins reach; the static file is one of rq-dashboard's own.
ADMIN_ONLY = ("/rq/", "/rq/0/view/workers", "/rq/0/data/queues.json", "/rq/0/data/workers.json",
              "/rq/static/css/main.css", "/metrics", "/admin/status", "/workers")


def completed_run(app, client, workers, tmp_path: Path, recipe: str = "invert", owner: str = "alice") -> dict:
    """Submit a one-step run of `owner`'s (the client's user's) image, call `workers()` and wait for the
    run: `workers` is `start_worker` (a real worker process) or `run_jobs` (its jobs in this process)."""
    digest = put_image(app, tmp_path, owner)
    answer = client.post("/runs", json={"recipe": recipe, "inputs": [digest]})
    assert answer.status_code == 201, answer.json
    workers()
    state = app.extensions["l1"].state
    run_id = answer.json["id"]
    run = wait_until(lambda: (r := state.runs.get(run_id)) and r["status"] not in ("pending", "running") and r,
                     f"run {run_id[:12]}")
    assert run["status"] == "completed", run
    return run


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie or a reaped one is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped, possibly between two reads
        return False


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(family, name: str, **labels) -> float:
    found = [s.value for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


# Access ------------------------------------------------------------------------------------------
def test_healthz_answers_without_sign_in(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json["ok"] is True


@pytest.mark.parametrize("path", ADMIN_ONLY)
def test_admin_surfaces_admit_admins_only(path, app, admin_client, alice_client):
    with admin_client.get(path) as answer:  # closed: static files are streamed from disk
        assert answer.status_code == 200
    refused = alice_client.get(path, headers=JSON)
    assert refused.status_code == 403
    assert refused.json["error"] == "forbidden"
    anonymous = app.test_client()
    assert anonymous.get(path, headers=JSON).status_code == 401
    page = anonymous.get(path, headers=HTML)
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login?next=")


def test_unrouted_dashboard_paths_are_guarded_too(app, alice_client):
    assert app.test_client().get("/rq/no/such/page", headers=JSON).status_code == 401
    assert alice_client.get("/rq/no/such/page", headers=JSON).status_code == 403


def test_dashboard_is_read_only(app, admin_client, redis_client):
    rq_conn = app.extensions["l1"].rq_connection
    Queue("steps", connection=rq_conn, serializer=JSONSerializer).enqueue(
        "l1web.jobs.runs.plan_run", "0" * 64, job_id="parked-job")
    requeue = admin_client.post("/rq/job/parked-job/requeue", headers=JSON)
    assert requeue.status_code == 403
    assert "read-only" in requeue.json["message"]
    # This one answers GET too, so the method alone would not stop it.
    assert admin_client.get("/rq/requeue/steps", headers=JSON).status_code == 403
    assert admin_client.post("/rq/queue/steps/queued/empty", headers=JSON).status_code == 403
    assert Queue("steps", connection=rq_conn, serializer=JSONSerializer).count == 1


def test_dashboard_reads_our_json_jobs_and_workers(app, admin_client, alice_client, start_worker, tmp_path):
    run = completed_run(app, alice_client, start_worker, tmp_path)
    workers = admin_client.get("/rq/0/data/workers.json").json["workers"]
    assert len(workers) == 1
    # While a worker is busy the dashboard shows its current job, which it must decode as JSON.
    rq_conn = app.extensions["l1"].rq_connection
    Queue("default", connection=rq_conn, serializer=JSONSerializer).enqueue("time.sleep", 3, job_id="napping")
    wait_until(lambda: admin_client.get("/rq/0/data/workers.json").json["workers"][0]["state"] == "busy",
               "the worker to pick the job up")
    busy = admin_client.get("/rq/0/data/workers.json").json["workers"][0]
    assert busy["current_job"]["job_id"] == "napping"
    assert busy["current_job"]["call_string"] == "time.sleep(3)"
    # The RQ job (a fair-share token) that planned the run and rendered its one step.
    (step,) = [s for s in app.extensions["l1"].state.runs.step_states(run["id"]).values() if s.get("rq_job")]
    job = admin_client.get(f"/rq/0/data/job/{step['rq_job']}.json")
    assert job.status_code == 200
    assert job.json["status"] == "finished"
    assert job.json["result"]["planned"] is True
    # A one-step run is a single job: its plan job renders the step (docs/runs.md, Execution).
    listing = admin_client.get("/rq/0/data/jobs/runs/finished/8/asc/1.json").json
    assert len(listing["jobs"]) == 1
    assert "plan run" in listing["jobs"][0]["description"]


# Metrics -------------------------------------------------------------------------------------------
def test_metrics_after_a_real_run(app, admin_client, alice_client, start_worker, tmp_path):
    run = completed_run(app, alice_client, start_worker, tmp_path)
    answer = admin_client.get("/metrics")
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    found = families(answer.get_data(as_text=True))
    assert sample(found["l1_runs"], "l1_runs", status="completed") == 1
    assert sample(found["l1_runs"], "l1_runs", status="failed") == 0
    steps = found["l1_step_duration_seconds"]
    assert sample(steps, "l1_step_duration_seconds_count", node_type="EFFECT") == 1
    assert sample(steps, "l1_step_duration_seconds_bucket", node_type="EFFECT", le="+Inf") == 1
    recorded = app.extensions["l1"].state.runs.step_states(run["id"])
    effect_seconds = [s["duration"] for s in recorded.values() if s.get("duration")]
    assert 0 < sample(steps, "l1_step_duration_seconds_sum", node_type="EFFECT") >= effect_seconds[0] * 0.5
    assert sample(found["l1_steps"], "l1_steps_total", node_type="EFFECT", outcome="completed") == 1
    assert sample(found["l1_cache_misses"], "l1_cache_misses_total") == 1
    assert sample(found["l1_cache_hits"], "l1_cache_hits_total") == 0
    stats = app.extensions["l1"].state.cache.stats()
    assert sample(found["l1_cache_items"], "l1_cache_items") == stats["items_stored"] == 2
    assert sample(found["l1_cache_bytes"], "l1_cache_bytes") == stats["bytes_stored"]
    assert sample(found["l1_queue_jobs"], "l1_queue_jobs", queue="steps", state="queued") == 0
    assert sum(s.value for s in found["l1_workers"].samples) == 1  # idle, or busy finishing its job


def test_metrics_count_a_cache_hit_on_a_forced_rerun(app, admin_client, alice_client, run_jobs, tmp_path):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    digest = next(iter(run["input_hashes"].values()))
    answer = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest], "force": True})
    assert answer.status_code == 200
    run_jobs()
    state = app.extensions["l1"].state
    wait_until(lambda: state.runs.get(run["id"])["status"] == "completed"
               and state.runs.get(run["id"])["attempt"] == "2", "the re-run")
    found = families(admin_client.get("/metrics").get_data(as_text=True))
    # A forced re-run renders again: two misses, two EFFECT steps timed.
    assert sample(found["l1_cache_misses"], "l1_cache_misses_total") == 2
    assert sample(found["l1_step_duration_seconds"], "l1_step_duration_seconds_count", node_type="EFFECT") == 2


def test_metrics_token_is_compared_by_hash(app, settings, state, alice_client, admin_client):
    token = "scraper-" + "x" * 40
    scraped = create_app(settings.with_changes(metrics_token_sha256=hashlib.sha256(token.encode()).hexdigest()),
                         state=state)
    client = scraped.test_client()
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert "l1_runs" in families(answer.get_data(as_text=True))
    # An admin's own L2 token works as Bearer too; a user's does not.
    assert client.get("/metrics", headers={"Authorization": f"Bearer {admin_client.token}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Bearer {alice_client.token}"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401


def test_each_app_has_its_own_registry(app, settings, state):
    other = create_app(settings, state=state)
    assert other.extensions["l1.metrics"] is not app.extensions["l1.metrics"]
    from prometheus_client import REGISTRY

    assert "l1_runs" not in {m.name for m in REGISTRY.collect()}


# Readiness -------------------------------------------------------------------------------------
@pytest.fixture()
def own_redis(tmp_path: Path):
    """A redis-server for this test alone, so it can be stopped."""
    server = RedisServer(tmp_path / "own-redis", aof=False).start()
    yield server
    server.stop()


def test_readiness_follows_redis_workers_and_queue_depth(own_redis, settings, tmp_path, start_worker):
    url = f"{own_redis.url}/0"
    own = settings.with_changes(redis_url=url, ready_max_queue=0)
    app = create_app(own, state=StateManager(connect(url)))
    client = app.test_client()

    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["redis"] == "ok"
    assert "No RQ worker is alive" in answer.json["reason"]

    worker = start_worker(env={"REDIS_URL": url})
    wait_until(lambda: client.get("/readyz").status_code == 200, "a worker to register")
    assert client.get("/readyz").json["workers"] == 1

    # A queue no worker serves fills up past READY_MAX_QUEUE (0 here).
    Queue("parked", connection=connect(url, decode=False), serializer=JSONSerializer).enqueue(
        "l1web.jobs.runs.plan_run", "0" * 64)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "Queue 'parked' holds 1 waiting jobs (limit 0)" in answer.json["reason"]
    connect(url).delete("rq:queue:parked")
    assert client.get("/readyz").status_code == 200

    worker.terminate()  # a worker stopping unregisters itself
    worker.wait(30)
    wait_until(lambda: client.get("/readyz").status_code == 503, "the stopped worker to unregister")
    assert "No RQ worker is alive" in client.get("/readyz").json["reason"]

    start_worker(env={"REDIS_URL": url})
    wait_until(lambda: client.get("/readyz").status_code == 200, "a new worker")
    own_redis.stop()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["redis"] == "unreachable"
    assert "Redis is unreachable" in answer.json["reason"]
    assert client.get("/healthz").status_code == 200  # the process itself is fine

    # Redis back (empty: no AOF here), and a worker registered on it: ready again.
    own_redis.start()
    start_worker(env={"REDIS_URL": url})
    wait_until(lambda: client.get("/readyz").status_code == 200, "readiness after Redis came back")


# Status page ---------------------------------------------------------------------------------------
def test_status_page_shows_workers_queues_storage_redis_and_ipns(app, admin_client, alice_client, start_worker,
                                                                 tmp_path, redis_client):
    completed_run(app, alice_client, start_worker, tmp_path)
    redis_client.hset(keys.ipns_status(), mapping={"last_sync": "2026-11-28T18:00:00Z", "state": "synced"})
    page = admin_client.get("/admin/status", headers=HTML).get_data(as_text=True)
    assert "Workers (1)" in page
    assert "steps" in page and "runs" in page
    assert "Append-only file</dt><dd>on" in page
    assert "synced" in page and "last_sync" in page
    # The run completes inside the step job, so the worker may still be finishing that job.
    data = wait_until(lambda: (d := admin_client.get("/admin/status", headers=JSON).json)["workers"][0]["state"]
                      == "idle" and d, "the worker to be idle")
    assert data["storage"]["items"] == 2
    assert data["storage"]["disk_free"] > 0
    assert data["redis"]["aof_enabled"] is True
    assert data["failed_jobs"] == 0
    assert data["ipns"]["state"] == "synced"
    assert 'href="/admin/status"' in page
    assert 'href="/admin/status"' not in alice_client.get("/runs", headers=HTML).get_data(as_text=True)


def test_status_page_says_when_nothing_is_running(admin_client):
    page = admin_client.get("/admin/status", headers=HTML).get_data(as_text=True)
    assert "No worker is running" in page
    assert "No sync state recorded yet" in page


# Logs ------------------------------------------------------------------------------------------------
def test_request_lines_carry_user_and_run_and_never_the_token(app, alice_client, run_jobs, tmp_path, caplog,
                                                              dev_l2, settings):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    token = dev_l2.mint("alice", settings.l1_public_url)
    caplog.set_level(logging.INFO)
    bearer = app.test_client()
    assert bearer.get(f"/runs/{run['id']}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    fresh = app.test_client()
    assert fresh.get("/auth", query_string={"auth_token": token, "next": f"/run/{run['id']}"}).status_code == 303
    lines = [r.getMessage() for r in caplog.records if r.name == "l1web.access"]
    assert any(f"path=/runs/{run['id']} status=200" in line and "user=alice" in line
               and f"run={run['id']}" in line for line in lines), lines
    assert any("path=/auth?auth_token=[redacted]" in line and "status=303" in line for line in lines), lines
    assert token not in caplog.text
    assert alice_client.token not in caplog.text


def test_request_lines_cannot_be_split_or_leak_query_secrets(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/media/x%0Arequest method=GET path=/forged status=200", headers=JSON,
               query_string={"token": "s3cret-value", "csrf_token": "other-s3cret"})
    lines = [r.getMessage() for r in caplog.records if r.name == "l1web.access"]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "path=/media/x%0Arequest%20method=GET%20path=/forged%20status=200?token=[redacted]" in lines[0]
    assert "s3cret" not in caplog.text


def test_worker_logs_one_line_per_step_with_run_and_job_ids(app, alice_client, start_worker, tmp_path):
    run = completed_run(app, alice_client, start_worker, tmp_path)
    log_text = (tmp_path / "worker-0.log").read_text()
    steps = [line for line in log_text.splitlines() if "l1web.steps" in line]
    assert len(steps) == 1, steps
    line = steps[0]
    assert f"run={run['id']}" in line
    assert f"job=plan-{run['id'][:16]}-1" in line  # a one-step run's plan job renders its step
    assert "type=EFFECT outcome=completed seconds=" in line
    assert alice_client.token not in log_text


# In a browser --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@pytest.mark.browser
def test_status_page_and_dashboard_in_chromium(page: Page, live_l1, dev_l2, start_worker, tmp_path):
    start_worker(name="render-1")
    wait_until(lambda: requests.get(f"{live_l1.url}/readyz", timeout=10).status_code == 200, "the worker")
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('admin', live_l1.url)}&next=/admin/status")
    expect(page.get_by_role("heading", name="Status", exact=True)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Status")).to_be_visible()
    expect(page.get_by_role("cell", name="render-1")).to_be_visible()
    page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
    # The dashboard's own scripts fetch its JSON with the admin's cookie, through our guard.
    page.get_by_role("link", name="RQ dashboard").click()
    page.get_by_role("link", name="Workers").click()
    expect(page.get_by_role("cell", name="render-1")).to_be_visible()
    page.screenshot(path=str(tmp_path / "rq-workers.png"), full_page=True)


#: `python worker.py` with a pause in its start, where a stop signal can fall while the worker
#: already shows as alive. "handlers": after RQ started its scheduler process, before RQ installs its
#: own stop handlers. "scheduler": in the scheduler process's at-fork hooks, where it still has the
#: worker's handler and an exception would be printed and ignored (RQ's handlers are in place).
#: "horse": in the worker's own at-fork hooks as it forks its first horse, where RQ's StopRequested
#: would be printed and ignored. "lost": the scheduler process ignores SIGTERM for its first 3 s,
#: as a just-forked child drops a signal that comes before CPython has reset its signal state.
#: "deaf": the scheduler process never listens to SIGTERM (the worker kills it after 2 s).
SLOW_START = """
import os, signal, sys, time
from l1web import worker

where = sys.argv[1]
started = worker.L1Worker._start_scheduler
ensure_horse = worker.L1Worker._ensure_horse
pause = None

def pause_in_child():
    if pause == "scheduler":
        time.sleep(3)
    if pause == "lost":
        before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3)
        signal.signal(signal.SIGTERM, before)

def pause_in_parent():
    if pause == "horse":
        print("horse forked", flush=True)
        time.sleep(3)

os.register_at_fork(after_in_child=pause_in_child, after_in_parent=pause_in_parent)

def slow(self, *args, **kwargs):
    global pause
    pause = where if where in ("scheduler", "lost") else None
    started(self, *args, **kwargs)
    pause = None
    print("scheduler forked", flush=True)
    if where == "handlers":
        time.sleep(3)

def first_horse(self):
    global pause
    pause = where if where == "horse" and self._horse is None else None
    try:
        return ensure_horse(self)
    finally:
        pause = None

worker.L1Worker._start_scheduler = slow
worker.L1Worker._ensure_horse = first_horse
if where == "deaf":
    worker.L1Worker.SCHEDULER_STOP_GRACE = 2.0
    worker.L1Scheduler._install_signal_handlers = lambda self: signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker.main([])
"""


@pytest.mark.parametrize("where", ["handlers", "scheduler", "horse", "lost", "deaf"])
def test_a_stop_while_the_worker_starts_ends_it_and_its_scheduler(where, settings, worker_env, tmp_path,
                                                                  redis_client):
    """SIGTERM to the worker's pid alone (as `docker stop` sends it) while it starts: the worker
    unregisters and exits, and its scheduler process goes with it, whether the signal comes before
    RQ's handlers (the scheduler is a non-daemon child multiprocessing would wait for at exit) or
    while the scheduler process is still in its at-fork hooks (CI hung there: the worker waited
    for a scheduler that lived on), or while the worker forks its first horse (RQ's StopRequested,
    raised from the handler, is ignored there: the worker went on waiting for work), or when the
    worker's stop signal to its scheduler is lost (CI hung there too: RQ sends it once and waits
    for ever), or when the scheduler does not listen at all (killed after a grace).
    `redis_client` flushes the database: a scheduler killed by an earlier case leaves its locks
    for 61 s, and then no scheduler process starts."""
    import os
    import signal
    import subprocess
    import time

    from rq import Worker

    from l1web.devtools.processes import python_process, stop_process

    log = tmp_path / "worker.log"
    proc = python_process(["-c", SLOW_START, where], worker_env, log=log)
    try:
        wait_until(lambda: "scheduler forked" in log.read_text(), "the worker's scheduler to start", timeout=60)
        if where == "horse":
            wait_until(lambda: "horse forked" in log.read_text(), "the worker's first horse", timeout=60)
        assert len(Worker.all(connection=connect(settings.redis_url, decode=False))) == 1
        scheduler = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert scheduler, "the worker has no child process (its scheduler)"
        if where == "scheduler":
            time.sleep(0.5)  # RQ's handlers installed, the worker waiting for work; its scheduler still paused
        os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit within 20 s of SIGTERM:\n" + log.read_text()[-3000:])
        assert code == 0, log.read_text()[-3000:]
        wait_until(lambda: not any(running(pid) for pid in scheduler), "the scheduler process to end", timeout=20)
        assert Worker.all(connection=connect(settings.redis_url, decode=False)) == []
        expected = {"handlers": "stopping on a stop signal noted earlier",
                    "scheduler": "warm shut down requested",
                    "horse": "stopping on a stop signal noted earlier",
                    "lost": "Scheduler stopping, releasing locks",
                    "deaf": "did not stop; killing it"}[where]
        assert expected in log.read_text()
    finally:
        stop_process(proc, signal.SIGKILL)
