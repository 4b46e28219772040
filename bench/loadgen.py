"""The load generator behind `bench/bench_load.py` and `tests/test_load.py`.

`Stack` starts the real parts on loopback, each on its own port and directory: a redis-server,
the development L2 (it mints the Bearer tokens and answers L1's verify calls), `python app.py`
(the real entry point, so waitress runs with the settings users get) and RQ worker processes
(`python worker.py`). `run_load` then drives it for a fixed time with asyncio clients:

- *submitters* upload a small PNG of their own (distinct bytes, so every run is new work),
  submit a run of a trivial image effect on it, then think for a while and repeat;
- *pollers* each watch one recent run the way the run page does under htmx: its status
  fragment every second until the run is final, then the next run; every fifth poller polls
  the runs list fragment every two seconds instead;
- *floor* clients ask for `GET /healthz` (anonymous; answers from the process alone: no Redis,
  no template) and the signed-in `GET /auth/whoami` at a steady pace, so the report shows the
  server's own floor measured under the same load beside each endpoint.

After the load, every acknowledged run is followed through the API (`GET /runs` per user, then
`GET /runs/<id>` for any not listed) until it is final or the drain time is over: a run the API
does not know is *lost*, one still pending or running is *stuck*.

`python bench/loadgen.py --submitters 20 --pollers 5 --duration 10` runs one load from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import free_port, python_process, start_redis, stop_process, wait_for  # noqa: E402

T = TypeVar("T")

#: Statuses of a run that is still in progress.
LIVE = frozenset({"pending", "running"})
#: Side of the uploaded images in pixels: tiny, so renders do not dominate the measurement.
IMAGE_SIDE = 16
#: Seconds between two polls of a run's status fragment (htmx's `every 1s` on the run page).
FRAGMENT_EVERY = 1.0
#: Seconds between two polls of the runs list fragment (`every 2s` on /runs).
LIST_EVERY = 2.0
#: Every n-th poller watches the runs list instead of one run.
LIST_POLLER_EVERY = 5
#: Requests of each floor kind measured one at a time before the load starts.
IDLE_FLOOR_REQUESTS = 50
#: Closed-loop clients of the capacity probe (each sends its next request when answered).
CAPACITY_CLIENTS = 32
#: Seconds between a floor client's requests.
FLOOR_EVERY = 0.5
#: Seconds any one request may take before it counts as a failure (never reached when healthy).
REQUEST_TIMEOUT = 60.0
#: Seconds between two sweeps of the API while draining.
DRAIN_POLL = 1.0
#: Runs per page when listing a user's runs (the API's largest page).
LIST_PAGE = 200
#: Request kinds that render nothing; the p99 goal applies to them.
NON_RENDER_KINDS = ("upload", "submit", "run_fragment", "list_fragment", "run_json")
#: Request kinds that show the server's floor.
FLOOR_KINDS = ("floor_healthz", "floor_whoami")


@dataclass(frozen=True)
class Profile:
    """How much load, for how long. Defaults are the issue's: 200 submitters, 50 pollers, 60 s."""

    submitters: int = 200
    pollers: int = 50
    floor_clients: int = 2
    duration: float = 60.0
    #: Seconds a submitter waits between two rounds (uniform in this range; each round is one
    #: upload and one run). The range sets the render load: see docs/load.md.
    think: tuple[float, float] = (20.0, 40.0)
    #: Seconds every run gets after the load to reach a final state.
    drain: float = 180.0
    #: Distinct signed-in users (each with one L2 token); clients share them round-robin.
    users: int = 20
    effect: str = "invert"
    workers: int = 2
    #: Extra environment for the web process and the workers (e.g. a raised RUN_RATE_LIMIT).
    env: dict[str, str] = field(default_factory=dict)
    seed: int = 1
    #: Seconds of the capacity probe before the load (0: none).
    capacity_seconds: float = 5.0


# Measurements ------------------------------------------------------------------------------
@dataclass
class Recorder:
    """Latency and status of every request, by kind; transport failures counted apart."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    stopped: float = 0.0

    def record(self, kind: str, status: int, seconds: float, body: bytes) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[kind][status] += 1
        if status >= 500 or status == 429:
            self.examples.setdefault(f"{kind} {status}", body[:300].decode("utf-8", "replace"))

    def fail(self, kind: str, exc: BaseException) -> None:
        self.failures[kind][type(exc).__name__] += 1
        self.examples.setdefault(f"{kind} {type(exc).__name__}", str(exc)[:300])

    def count(self, predicate) -> int:
        return sum(n for counter in self.statuses.values() for status, n in counter.items() if predicate(status))

    def summary(self) -> dict:
        seconds = max(self.stopped - self.started, 1e-9)
        kinds = {}
        for kind in sorted(set(self.latencies) | set(self.failures)):
            values = np.array(self.latencies.get(kind) or [np.nan])
            statuses = self.statuses.get(kind, Counter())
            kinds[kind] = {
                "requests": int(sum(statuses.values())),
                "per_second": sum(statuses.values()) / seconds,
                "p50_ms": float(np.percentile(values, 50) * 1000),
                "p95_ms": float(np.percentile(values, 95) * 1000),
                "p99_ms": float(np.percentile(values, 99) * 1000),
                "max_ms": float(np.max(values) * 1000),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "failures": dict(self.failures.get(kind, {})),
            }
        return {
            "seconds": seconds, "kinds": kinds,
            "total_requests": self.count(lambda s: True),
            "per_second": self.count(lambda s: True) / seconds,
            "2xx": self.count(lambda s: 200 <= s < 300), "3xx": self.count(lambda s: 300 <= s < 400),
            "4xx": self.count(lambda s: 400 <= s < 500 and s != 429), "429": self.count(lambda s: s == 429),
            "5xx": self.count(lambda s: s >= 500),
            "transport_failures": sum(sum(c.values()) for c in self.failures.values()),
            "examples": dict(self.examples),
        }


# The stack ---------------------------------------------------------------------------------
class Stack:
    """redis-server, the dev L2, `python app.py` and RQ workers, on loopback in `work`."""

    def __init__(self, work: Path, *, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.work = work
        self.workers = workers
        self.extra_env = dict(env or {})
        self.procs: list = []
        self.redis = None
        self.l2: LiveL2 | None = None

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self.redis = start_redis(self.work / "redis", free_port())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.l2 = LiveL2(self.work / "devl2", l1_urls=(self.url,))
        self.env = {
            "REDIS_URL": f"{self.redis.url}/5", "CACHE_DIR": str(self.work / "cache"),
            "DATA_DIR": str(self.work / "data"), "PORT": str(self.port), "HOST": "127.0.0.1",
            "L1_PUBLIC_URL": self.url, "L2_SERVER": self.l2.url, "SECRET_KEY": "load-test", "SAMPLE_ASSETS": "0",
            **self.extra_env,
        }
        self.web = python_process(["app.py"], self.env, log=self.work / "web.log")
        self.procs.append(self.web)
        for index in range(self.workers):
            self.procs.append(python_process(["worker.py", "--name", f"load-{self.port}-{index}"], self.env,
                                             log=self.work / f"worker-{index}.log"))
        wait_for(self._answers, what="the web server", timeout=60)

    def _answers(self) -> bool:
        import urllib.request

        request = urllib.request.Request(self.url + "/", headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310 - loopback URL of ours
            return answer.status == 200

    def mint(self, username: str) -> str:
        assert self.l2 is not None
        return self.l2.mint(username, self.url)

    def log_problems(self) -> dict[str, int]:
        """Tracebacks written by the web process and the workers during the run."""
        found = {}
        for path in sorted(self.work.glob("*.log")):
            text = path.read_text(errors="replace")
            found[path.stem] = text.count("Traceback (most recent call last)")
        return found

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
        if self.l2 is not None:
            self.l2.stop()
            self.l2 = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


# The clients -------------------------------------------------------------------------------
def png_bytes(seed: int) -> bytes:
    """A tiny PNG whose pixels come from `seed`: distinct seeds give distinct uploads."""
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Shared:
    """What the clients share: the session, the users' tokens, the runs submitted so far."""

    http: aiohttp.ClientSession
    base: str
    tokens: list[str]
    recorder: Recorder
    stop: asyncio.Event
    profile: Profile
    #: run id → index of the user who submitted it (acknowledged with 200/201).
    runs: dict[str, int] = field(default_factory=dict)
    #: Runs not yet taken by a poller, newest last.
    to_watch: list[str] = field(default_factory=list)
    upload_seeds: itertools.count = field(default_factory=itertools.count)

    def headers(self, user: int, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}", **extra}


async def call(shared: Shared, kind: str, method: str, path: str, **kwargs) -> tuple[int, bytes] | None:
    """One timed request; None when it failed below HTTP (counted as a transport failure)."""
    started = time.perf_counter()
    try:
        async with shared.http.request(method, shared.base + path, allow_redirects=False, **kwargs) as answer:
            body = await answer.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        shared.recorder.fail(kind, exc)
        return None
    shared.recorder.record(kind, answer.status, time.perf_counter() - started, body)
    return answer.status, body


async def pause(shared: Shared, seconds: float) -> None:
    """Sleep, but wake at once when the load is over."""
    try:
        await asyncio.wait_for(shared.stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        pass


async def submitter(shared: Shared, index: int, rng: random.Random) -> None:
    user = index % len(shared.tokens)
    low, high = shared.profile.think
    await pause(shared, rng.uniform(0, high))  # spread the first rounds over one think time
    while not shared.stop.is_set():
        seed = shared.profile.seed * 1_000_003 + next(shared.upload_seeds)
        answer = await call(shared, "upload", "POST", f"/cache/upload?filename=load-{seed}.png",
                            data=png_bytes(seed), headers=shared.headers(user, **{"Content-Type": "image/png"}))
        if answer and answer[0] in (200, 201):
            digest = json.loads(answer[1])["digest"]
            body = {"recipe": shared.profile.effect, "inputs": [digest]}
            sent = await call(shared, "submit", "POST", "/runs", json=body, headers=shared.headers(user))
            if sent and sent[0] in (200, 201):
                run_id = json.loads(sent[1])["id"]
                shared.runs[run_id] = user
                shared.to_watch.append(run_id)
                # A CLI client checks on its run once, as `render.py` does before waiting.
                await call(shared, "run_json", "GET", f"/runs/{run_id}", headers=shared.headers(user))
        await pause(shared, rng.uniform(low, high))


async def poller(shared: Shared, index: int, rng: random.Random) -> None:
    await pause(shared, rng.uniform(0, FRAGMENT_EVERY))
    if index % LIST_POLLER_EVERY == LIST_POLLER_EVERY - 1:
        user = index % len(shared.tokens)
        while not shared.stop.is_set():
            started = time.monotonic()
            await call(shared, "list_fragment", "GET", "/runs/fragment",
                       headers=shared.headers(user, **{"HX-Request": "true"}))
            await pause(shared, LIST_EVERY - (time.monotonic() - started))
        return
    while not shared.stop.is_set():
        if not shared.to_watch:
            await pause(shared, FRAGMENT_EVERY)
            continue
        run_id = shared.to_watch.pop()
        user = shared.runs[run_id]
        while not shared.stop.is_set():
            started = time.monotonic()
            answer = await call(shared, "run_fragment", "GET", f"/run/{run_id}/fragment",
                                headers=shared.headers(user, **{"HX-Request": "true"}))
            # The fragment carries hx-trigger only while the run is live: htmx stops there.
            if answer and (answer[0] != 200 or b"hx-trigger" not in answer[1]):
                break
            await pause(shared, FRAGMENT_EVERY - (time.monotonic() - started))


async def floor_client(shared: Shared, index: int) -> None:
    user = index % len(shared.tokens)
    while not shared.stop.is_set():
        started = time.monotonic()
        await call(shared, "floor_healthz", "GET", "/healthz")
        await call(shared, "floor_whoami", "GET", "/auth/whoami", headers=shared.headers(user))
        await pause(shared, FLOOR_EVERY - (time.monotonic() - started))


async def capacity_probe(shared: Shared, seconds: float) -> None:
    """The most the server answers of its cheapest request: closed-loop clients on `GET /healthz`."""
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            await call(shared, "capacity_healthz", "GET", "/healthz")

    await asyncio.gather(*(client() for _ in range(CAPACITY_CLIENTS)))


# Checking every run ------------------------------------------------------------------------
async def final_states(shared: Shared, timeout: float) -> dict:
    """Follow every acknowledged run through the API until all are final or `timeout` passes."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    seen: dict[str, dict] = {}
    while True:
        seen = await _sweep(shared)
        live = [rid for rid in shared.runs if rid not in seen or seen[rid]["status"] in LIVE]
        if not live or time.monotonic() > deadline:
            break
        await asyncio.sleep(DRAIN_POLL)
    lost = [rid for rid in shared.runs if rid not in seen]
    stuck = [rid for rid in shared.runs if rid in seen and seen[rid]["status"] in LIVE]
    finals = Counter(seen[rid]["status"] for rid in shared.runs if rid in seen)
    errors = Counter(seen[rid].get("error") or "" for rid in shared.runs
                     if rid in seen and seen[rid]["status"] == "failed")
    # A run the API has but no client was told about (say, one created by a request that then failed).
    unacknowledged = [rid for rid in seen if rid not in shared.runs]
    return {"runs": len(shared.runs), "lost": len(lost), "stuck": len(stuck), "finals": dict(finals),
            "unacknowledged": len(unacknowledged),
            "drain_seconds": time.monotonic() - started, "lost_ids": lost[:5], "stuck_ids": stuck[:5],
            "failed_errors": dict(errors.most_common(5))}


async def _sweep(shared: Shared) -> dict[str, dict]:
    """Every user's runs as the API lists them; acknowledged runs not listed asked for one by one."""
    found: dict[str, dict] = {}
    for user in range(len(shared.tokens)):
        offset = 0
        while True:
            answer = await call(shared, "drain_list", "GET", f"/runs?limit={LIST_PAGE}&offset={offset}",
                                headers=shared.headers(user))
            if answer is None or answer[0] != 200:
                break
            page = json.loads(answer[1])
            found.update((run["id"], run) for run in page["runs"])
            offset += len(page["runs"])
            if not page["runs"] or offset >= page["total"]:
                break
    for run_id, user in shared.runs.items():
        if run_id not in found:
            answer = await call(shared, "drain_get", "GET", f"/runs/{run_id}", headers=shared.headers(user))
            if answer and answer[0] == 200:
                found[run_id] = json.loads(answer[1])
    return found


# Putting it together -----------------------------------------------------------------------
async def drive(base: str, tokens: list[str], profile: Profile) -> dict:
    """Warm up, run the load for `profile.duration`, then drain; the whole report."""
    clients = profile.submitters + profile.pollers + profile.floor_clients
    connector = aiohttp.TCPConnector(limit=clients + 8, limit_per_host=clients + 8)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        shared = Shared(http, base, tokens, Recorder(), asyncio.Event(), profile)
        # Each token's first use costs one L2 verification: pay them before the clock starts.
        for user in range(len(tokens)):
            answer = await call(shared, "warmup", "GET", "/auth/whoami", headers=shared.headers(user))
            if answer is None or answer[0] != 200:
                raise RuntimeError(f"warm-up sign-in failed: {answer}")
        # The floor with nothing else going on, one request at a time.
        idle = shared.recorder = Recorder(started=time.perf_counter())
        for _ in range(IDLE_FLOOR_REQUESTS):
            await call(shared, "floor_healthz", "GET", "/healthz")
            await call(shared, "floor_whoami", "GET", "/auth/whoami", headers=shared.headers(0))
        idle.stopped = time.perf_counter()
        capacity = shared.recorder = Recorder(started=time.perf_counter())
        await capacity_probe(shared, profile.capacity_seconds)
        capacity.stopped = time.perf_counter()
        recorder = shared.recorder = Recorder()
        rng = random.Random(profile.seed)
        tasks = [asyncio.create_task(submitter(shared, i, random.Random(rng.random())))
                 for i in range(profile.submitters)]
        tasks += [asyncio.create_task(poller(shared, i, random.Random(rng.random()))) for i in range(profile.pollers)]
        tasks += [asyncio.create_task(floor_client(shared, i)) for i in range(profile.floor_clients)]
        recorder.started = time.perf_counter()
        await asyncio.sleep(profile.duration)
        shared.stop.set()
        await asyncio.gather(*tasks)  # every client finishes the request it is in
        recorder.stopped = time.perf_counter()
        load = recorder.summary()
        shared.recorder = Recorder()
        at_end = await final_states(shared, 0)  # one sweep: how far the workers kept up
        runs = await final_states(shared, profile.drain)
        runs["final_when_load_ended"] = at_end["runs"] - at_end["stuck"] - at_end["lost"]
        drain = shared.recorder.summary()
    return {"load": load, "idle_floor": idle.summary(), "capacity": capacity.summary(), "runs": runs,
            "drain_http": {k: drain[k] for k in ("total_requests", "2xx", "4xx", "429", "5xx", "transport_failures")}}


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: callers may already run an event loop (pytest with
    Playwright's sync API does), and asyncio refuses to nest one in the same thread."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="loadgen")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def run_load(profile: Profile, work: Path | None = None) -> dict:
    """Start the stack in a temp dir (or `work`), drive it, stop it; the report."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="l1-load-")) if work is None else work
    try:
        with Stack(work, workers=profile.workers, env=profile.env) as stack:
            tokens = [stack.mint(f"load{index:02d}") for index in range(profile.users)]
            report = run_async(drive(stack.url, tokens, profile))
            report["tracebacks"] = stack.log_problems()
        report["profile"] = {k: v for k, v in vars(profile).items()}
        return report
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Drive a real L1 stack with asyncio clients.")
    parser.add_argument("--submitters", type=int, default=Profile.submitters)
    parser.add_argument("--pollers", type=int, default=Profile.pollers)
    parser.add_argument("--duration", type=float, default=Profile.duration)
    parser.add_argument("--think", type=float, nargs=2, default=Profile.think)
    parser.add_argument("--drain", type=float, default=Profile.drain)
    parser.add_argument("--users", type=int, default=Profile.users)
    parser.add_argument("--workers", type=int, default=Profile.workers)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the web and workers")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep its logs")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    profile = Profile(submitters=args.submitters, pollers=args.pollers, duration=args.duration,
                      think=tuple(args.think), drain=args.drain, users=args.users, workers=args.workers, env=env)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run_load(profile, args.keep), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
