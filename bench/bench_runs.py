"""Runs: worker throughput, parallel branches, re-submission, and listings over 100,000 runs.

Starts its own redis-server, the development L2 (for a real Bearer token), the real web app
(`app.py`, waitress) and real worker processes (`worker.py`), then measures, each beside a
baseline from the same run:

- trivial one-step runs per second on 2 workers ÷ raw RQ trivial jobs (`os.getpid`) per second
  on the same 2 workers and Redis (goal ≥ 0.5);
- a DAG with two independent heavy branches of equal work: wall time on 2 workers ÷ on 1 (goal
  ≤ 0.6), each worker pinned to one CPU (`sched_setaffinity`, inherited by its work-horses;
  numpy/OpenBLAS/OpenMP one thread), so 1 worker cannot already use both cores and the figure
  measures scheduling; beside it the best the DAG's shape allows (the 1-worker wall less the
  shorter branch) and the 2-worker wall against that;
- an identical re-submission (`POST /runs`) through HTTP: p50 round trip (goal ≤ 20 ms) and the
  jobs it enqueued (goal 0), beside an authenticated `GET /auth/whoami`;
- `GET /runs?limit=50` with 100,000 runs stored (goal p50 ≤ 10 ms) and a run's status fragment
  (goal p50 ≤ 5 ms), beside the same `GET /auth/whoami`.

`python bench/bench_runs.py` runs it alone; `BENCH_RUNS_FILL` changes the number of stored runs.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import (  # noqa: E402
    ONE_THREAD_ENV,
    free_port,
    python_process,
    start_redis,
    stop_process,
    tree_cpu_seconds,
    wait_for,
)
from l1web.jobs import queues  # noqa: E402
from l1web.jobs.queues import run_service  # noqa: E402
from l1web.recipes.parse import parse_recipe  # noqa: E402
from l1web.runs.model import RunStatus  # noqa: E402
from l1web.runs.service import Submission  # noqa: E402
from l1web.state import StateManager, connect, keys  # noqa: E402
from l1web.store import ContentStore  # noqa: E402
from l1web.users import User  # noqa: E402

#: Runs stored for the listing benchmark (the issue asks for 100,000).
FILL = int(os.environ.get("BENCH_RUNS_FILL", "100000"))
#: Trivial runs, and raw RQ jobs, per throughput measurement. A round of 40 lasted ~0.15 s, of
#: which the first run's way to a worker and the last one's end were ~10 %: it measured latency
#: as much as throughput (session 28: 0.47-0.61 over six runs, against 0.54-0.70 with 100).
TRIVIAL = int(os.environ.get("BENCH_RUNS_TRIVIAL", "100"))
#: Alternating rounds of raw jobs and runs; each side keeps its best (more rounds: a best less
#: at the mercy of other programs on the machine).
ROUNDS = int(os.environ.get("BENCH_RUNS_ROUNDS", "5"))
#: Requests per latency measurement (the first few warm up and are dropped).
REQUESTS, WARMUP = 200, 10
#: Runs copied per Redis call while filling.
FILL_BATCH = 1000
#: Alternating rounds of the two-branch DAG on 1 and on 2 workers; each keeps its best.
PARALLEL_ROUNDS = 4
#: Seconds for a finished run's last processes to be reaped before CPU time is read.
REAP_PAUSE = 0.5
#: Side of the heavy branches' input image, in pixels (width, height).
HEAVY_SIZE = (2400, 1600)
#: Goals from the issue.
THROUGHPUT_GOAL, PARALLEL_GOAL, RESUBMIT_GOAL_MS, LIST_GOAL_MS, FRAGMENT_GOAL_MS = 0.5, 0.6, 20, 10, 5
USER = User("bench")

#: Two branches of the same cost (dog at two settings), then small steps that must wait for both.
TWO_HEAVY_BRANCHES = """
name: two-heavy-branches
dag:
  nodes:
    - {id: image, type: SOURCE, config: {input: true, name: image}}
    - {id: edges, type: EFFECT, config: {effect: dog}, inputs: [image]}
    - {id: ink, type: EFFECT, config: {effect: dog, params: {phi: 20}}, inputs: [image]}
    - {id: edges_small, type: RESIZE, config: {width: 320, height: 240}, inputs: [edges]}
    - {id: ink_small, type: RESIZE, config: {width: 320, height: 240}, inputs: [ink]}
    - {id: both, type: BLEND, config: {mode: normal, opacity: 0.5}, inputs: [edges_small, ink_small]}
  output: both
"""


class Bench:
    """The services of one benchmark run, and helpers over them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = start_redis(work / "redis", free_port())
        self.port = free_port()
        self.l1_url = f"http://127.0.0.1:{self.port}"
        self.l2 = LiveL2(work / "devl2", l1_urls=(self.l1_url,))
        self.env = {
            "REDIS_URL": f"{self.redis.url}/5", "CACHE_DIR": str(work / "cache"), "DATA_DIR": str(work / "data"),
            "PORT": str(self.port), "L1_PUBLIC_URL": self.l1_url, "L2_SERVER": self.l2.url,
            "SECRET_KEY": "bench", "RUN_RATE_LIMIT": "100000", "SAMPLE_ASSETS": "0",
        }
        self.state = StateManager(connect(self.env["REDIS_URL"]))
        self.rq = connect(self.env["REDIS_URL"], decode=False)
        self.store = ContentStore(work / "cache", self.state.cache)
        self.service = run_service(self.state, self.store, self.rq)
        self.workers: list = []
        self.pinned = False
        self.dag_run = ""
        self.web = python_process(["app.py"], self.env, log=work / "web.log")
        wait_for(self._web_up, what="the web server", timeout=30)
        self.token = self.l2.mint(USER.name, self.l1_url)
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.set_workers(0)
        stop_process(self.web)
        self.l2.stop()
        self.redis.stop()

    def _web_up(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/", headers={"Accept": "application/json"})
            return conn.getresponse().status == 200
        finally:
            conn.close()

    # Workers -------------------------------------------------------------------------------
    def set_workers(self, count: int, *, pinned: bool = False) -> None:
        """Exactly `count` worker processes, each registered with RQ before this returns.

        `pinned`: worker i runs on CPU i only, with one numeric thread (see the module's doc).
        """
        from rq import Worker

        if pinned != self.pinned:
            while self.workers:
                stop_process(self.workers.pop())
            wait_for(lambda: not Worker.all(connection=self.rq), what="no workers", timeout=30)
            self.pinned = pinned
        while len(self.workers) > count:
            stop_process(self.workers.pop())
        cpus = sorted(os.sched_getaffinity(0))
        while len(self.workers) < count:
            index = len(self.workers)
            name = f"bench-{index}-{time.monotonic_ns()}"
            self.workers.append(python_process(["worker.py", "--name", name],
                                               {**self.env, **(ONE_THREAD_ENV if pinned else {})},
                                               log=self.work / f"{name}.log",
                                               cpus={cpus[index % len(cpus)]} if pinned else None))
        wait_for(lambda: len(Worker.all(connection=self.rq)) == count, what=f"{count} workers", timeout=30)

    # HTTP ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.http.request(method, path, body=data, headers=headers)
        response = self.http.getresponse()
        return response.status, response.read()

    def latency_ms(self, method: str, path: str, body: dict | None = None, expect: int = 200) -> float:
        """p50 of `REQUESTS` round trips on one kept-alive connection, in milliseconds."""
        samples = []
        for index in range(REQUESTS + WARMUP):
            started = time.perf_counter()
            status, payload = self.request(method, path, body)
            elapsed = time.perf_counter() - started
            if status != expect:
                raise RuntimeError(f"{method} {path}: {status} {payload[:200]!r}")
            if index >= WARMUP:
                samples.append(elapsed * 1000)
        return statistics.median(samples)

    # Runs ----------------------------------------------------------------------------------
    def image(self, seed: int, size: tuple[int, int] = (8, 8)) -> str:
        pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = self.work / f"in-{seed}.png"
        Image.fromarray(pixels).save(path)
        return self.store.put_file(path, source="bench", owner=USER.name)

    def wait(self, run_ids: list[str], timeout: float = 300, poll: float = 0.005) -> float:
        """Blocks until every run has finished, looking every `poll` s; the monotonic time it noticed."""
        deadline = time.monotonic() + timeout
        pending = list(run_ids)
        while pending:
            # One read a look, as the raw baseline's poll is one ZCARD: the oldest run still live,
            # and once it is over the next ones in the same look (runs finish about in the order
            # they were submitted; any order is waited for). Reading every pending run's status at
            # each look (up to 200 HGETs every 5 ms, ~75 a run in a round of 200) took CPU from the
            # very workers and redis-server measured, which the raw side's poll did not.
            while pending:
                status = self.state.redis.hget(keys.run(pending[0]), "status")
                if not status or RunStatus(status).live:
                    break
                run_id = pending.pop(0)
                if status != RunStatus.COMPLETED:
                    raise RuntimeError(f"run {run_id[:12]} {status}: {self.state.runs.get(run_id).get('error')}")
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pending)} runs still live after {timeout} s")
                time.sleep(poll)
        return time.monotonic()


# Measurements --------------------------------------------------------------------------------
def throughput(bench: Bench) -> list[dict]:
    """Trivial one-step runs per second ÷ raw RQ trivial jobs per second, both on 2 workers.

    Other programs share this machine, so the two alternate for `ROUNDS` rounds and each side
    keeps its best round.
    """
    bench.set_workers(2)
    inputs = [bench.image(seed) for seed in range(ROUNDS * TRIVIAL + 4)]
    bench.wait([bench.service.submit(Submission("identity", [digest]), USER)[0]["id"] for digest in inputs[:4]])
    raw, ours = [], []
    for index in range(ROUNDS):
        raw.append(raw_jobs_per_second(bench))
        batch = inputs[4 + index * TRIVIAL:4 + (index + 1) * TRIVIAL]
        started = time.monotonic()
        run_ids = [bench.service.submit(Submission("identity", [digest]), USER)[0]["id"] for digest in batch]
        ours.append(TRIVIAL / (bench.wait(run_ids) - started))
    return [{"benchmark": f"trivial one-step runs/s vs raw RQ jobs/s, 2 workers (best of {ROUNDS} x {TRIVIAL})",
             "l1": max(ours), "baseline": max(raw), "ratio": max(ours) / max(raw), "goal": f">= {THROUGHPUT_GOAL}",
             "unit": "per s"}]


def raw_jobs_per_second(bench: Bench) -> float:
    """`TRIVIAL` jobs calling `os.getpid`, through the same queue module and workers."""
    from rq.registry import FinishedJobRegistry

    finished = FinishedJobRegistry("default", connection=bench.rq)
    before = finished.count
    queue = queues.queue(bench.rq, "default")
    started = time.monotonic()
    for _ in range(TRIVIAL):
        queue.enqueue("os.getpid", result_ttl=600)
    deadline = started + 120
    while finished.count - before < TRIVIAL:
        if time.monotonic() > deadline:
            raise RuntimeError("raw RQ jobs did not finish")
        time.sleep(0.005)
    return TRIVIAL / (time.monotonic() - started)


def parallel_branches(bench: Bench) -> list[dict]:
    """Wall time of a two-branch DAG on 2 workers ÷ on 1 worker (every step rendered each time)."""
    recipe = parse_recipe(TWO_HEAVY_BRANCHES)
    bench.state.recipes.save(recipe.id, name=recipe.name, owner=USER.name, yaml_text=TWO_HEAVY_BRANCHES,
                             recipe=recipe.to_dict())
    image = bench.image(10_000, HEAVY_SIZE)
    walls: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}  # per round: the busiest worker's CPU seconds
    overlap: list[float] = []  # per 1-worker round: the seconds a second worker could take over
    load = os.getloadavg()[0]
    for workers in (1, 2) * PARALLEL_ROUNDS:  # alternating, against other programs' load
        bench.set_workers(workers, pinned=True)
        before = tree_cpu_seconds([proc.pid for proc in bench.workers])
        started = time.time()
        run, _ = bench.service.submit(Submission(recipe.id, {"image": image}, force=True), USER)
        # The run's own finish time, and a slow look: polling every 5 ms took a few % of a CPU
        # (this process and redis-server), which the 2-worker run, with no CPU spare, paid.
        bench.wait([run["id"]], poll=0.05)
        walls[workers].append(float(bench.state.runs.get(run["id"])["finished"]) - started)
        time.sleep(REAP_PAUSE)
        after = tree_cpu_seconds([proc.pid for proc in bench.workers])
        cpus[workers].append(max(a - b for a, b in zip(after, before, strict=True)))
        if workers == 1:
            took = {sid: float(s.get("duration") or 0) for sid, s in bench.state.runs.step_states(run["id"]).items()}
            overlap.append(min(took["edges"] + took["edges_small"], took["ink"] + took["ink_small"]))
    bench.dag_run = run["id"]
    one, two = min(walls[1]), min(walls[2])
    # The best 2 workers can do is to run the shorter branch beside the longer one: the 1-worker
    # wall minus the shorter branch's steps. The 2-worker wall against that is what scheduling
    # (claiming, starting both branches at once) costs; the ideal against the 1-worker wall is
    # how much the DAG's shape allows at all. The branches are the same work (dog; another phi, so
    # another cache id): with blur on one of them (until this round) the shorter branch was
    # 0.2-0.3 s shorter, and the best 2 workers could do was 0.62-0.67 of 1 worker, whatever
    # the scheduler did.
    ideal = one - overlap[walls[1].index(one)]
    return [{"benchmark": f"two heavy branches + join: wall time, 2 workers vs 1, 1 CPU each "
                          f"(best of {PARALLEL_ROUNDS}; load {load:.1f} before)",
             "l1": two, "baseline": one, "ratio": two / one,
             "goal": f"<= {PARALLEL_GOAL}", "unit": "s"},
            {"benchmark": "two heavy branches + join: ideal 2-worker wall (1-worker wall less the shorter "
                          "branch's steps) vs 1 worker: what the DAG's shape allows",
             "l1": ideal, "baseline": one, "ratio": ideal / one, "goal": "", "unit": "s"},
            {"benchmark": "two heavy branches + join: 2-worker wall vs that ideal (scheduling's cost)",
             "l1": two, "baseline": ideal, "ratio": two / ideal, "goal": "", "unit": "s"},
            # Other tenants do not move this one: one worker leaves the other CPU to them, two
            # share both with them (docs/scaling.md), so under load the wall ratio measures them.
            {"benchmark": "two heavy branches + join: CPU seconds of the busier of 2 workers vs the 1 "
                          f"worker (medians of {PARALLEL_ROUNDS})",
             "l1": statistics.median(cpus[2]), "baseline": statistics.median(cpus[1]),
             "ratio": statistics.median(cpus[2]) / statistics.median(cpus[1]), "goal": "", "unit": "cpu s"}]


def resubmission(bench: Bench, whoami_ms: float) -> list[dict]:
    """`POST /runs` for a completed run: answered from Redis, nothing enqueued."""
    digest = bench.image(20_000)
    body = {"recipe": "invert", "inputs": [digest]}
    status, payload = bench.request("POST", "/runs", body)
    if status != 201:
        raise RuntimeError(f"POST /runs: {status} {payload[:200]!r}")
    bench.wait([json.loads(payload)["id"]])
    jobs_before = job_count(bench)
    p50 = bench.latency_ms("POST", "/runs", body)
    enqueued = job_count(bench) - jobs_before
    return [
        {"benchmark": "identical re-submission POST /runs (completed run) p50 vs GET /auth/whoami",
         "l1": p50, "baseline": whoami_ms, "ratio": p50 / whoami_ms, "goal": f"<= {RESUBMIT_GOAL_MS}", "unit": "ms"},
        {"benchmark": f"identical re-submission: RQ jobs created by {REQUESTS + WARMUP} requests",
         "l1": enqueued, "baseline": 0, "ratio": None, "goal": "0", "unit": "jobs"},
    ]


def job_count(bench: Bench) -> int:
    """RQ jobs ever created and still recorded (finished ones are kept for a day)."""
    return sum(1 for _ in bench.rq.scan_iter(match=b"rq:job:*", count=1000))


# KEYS: template run, all index, status index, user index, user+status index
# ARGV: run key prefix, first number, how many, creation time of number 0 (later numbers are older)
_CLONE = """
local fields = redis.call('HGETALL', KEYS[1])
local first, count, newest = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for n = first, first + count - 1 do
  local id = string.format('%064x', n)
  local created = string.format('%d', newest - n)
  local key = ARGV[1] .. id
  local args = {}
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    if fields[i] == 'id' then value = id elseif fields[i] == 'created' then value = created end
    args[#args + 1] = fields[i]
    args[#args + 1] = value
  end
  redis.call('HSET', key, unpack(args))
  for k = 2, 5 do redis.call('ZADD', KEYS[k], created, key) end
end
return count
"""


def fill(bench: Bench, template_id: str, count: int) -> None:
    """`count` copies of a stored run (new ids, older creation times), indexed as `Runs.create` does.

    The copies are made inside Redis by a script, a batch per call: filling 100,000 runs
    takes seconds rather than the minutes 100,000 HTTP submissions would.
    """
    template = bench.state.runs.get(template_id)
    owner, status = str(template.get("owner") or ""), str(template["status"])
    index_keys = [keys.runs_index(), keys.runs_by_status(status), keys.runs_by_user(owner),
                  keys.runs_by_user_status(owner, status)]
    clone = bench.state.redis.register_script(_CLONE)
    newest = int(float(template["created"])) - 1
    for first in range(0, count, FILL_BATCH):
        clone(keys=[keys.run(template_id), *index_keys],
              args=[keys.run(""), first, min(FILL_BATCH, count - first), newest])


def listings(bench: Bench, whoami_ms: float) -> list[dict]:
    completed = bench.state.runs.get(bench.dag_run)
    started = time.monotonic()
    fill(bench, completed["id"], FILL)
    fill_seconds = time.monotonic() - started
    total = bench.state.runs.page(user=USER.name, limit=1)[1]
    list_ms = bench.latency_ms("GET", "/runs?limit=50")
    fragment_ms = bench.latency_ms("GET", f"/run/{completed['id']}/fragment")
    return [
        {"benchmark": f"GET /runs?limit=50 with {total:,} runs stored, p50 vs GET /auth/whoami",
         "l1": list_ms, "baseline": whoami_ms, "ratio": list_ms / whoami_ms, "goal": f"<= {LIST_GOAL_MS}",
         "unit": "ms"},
        {"benchmark": "GET /run/<id>/fragment (completed, 6 steps) p50 vs GET /auth/whoami",
         "l1": fragment_ms, "baseline": whoami_ms, "ratio": fragment_ms / whoami_ms,
         "goal": f"<= {FRAGMENT_GOAL_MS}", "unit": "ms"},
        {"benchmark": f"filling {FILL:,} runs (copies of a completed run, made in Redis)", "l1": fill_seconds,
         "baseline": None, "ratio": None, "goal": "", "unit": "s"},
    ]


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-runs-") as tmp:
        bench = Bench(Path(tmp))
        try:
            out = throughput(bench)
            out += parallel_branches(bench)
            whoami_ms = bench.latency_ms("GET", "/auth/whoami")
            out += resubmission(bench, whoami_ms)
            out += listings(bench, whoami_ms)
            return out
        finally:
            bench.close()


if __name__ == "__main__":
    for row in rows():
        print(row)
