"""What a Prometheus scrape and a readiness probe cost, with 100,000 runs and 1,000 queued jobs stored.

Measured in-process (Flask test client, real redis-server, one real worker registered), so the
figures are L1's own work plus its Redis round trips. Baselines from the same run: `/healthz`
(the request path with no Redis at all) and a bare Redis PING round trip.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from rq import Queue
from rq.serializers import JSONSerializer

from l1web.devtools.processes import python_process, start_redis, stop_process, wait_for
from l1web.settings import Settings
from l1web.state import StateManager, connect, keys
from l1web.state.metrics import StepMetrics
from l1web.web import create_app

#: Runs placed in the status indexes (the metrics count them with ZCARD).
RUNS = 100_000
#: Jobs left waiting in a queue no worker serves.
QUEUED = 1_000
#: Requests per measured endpoint.
SAMPLES = 200
TOKEN = "bench-metrics-token"


def _p50_ms(call) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _fill(url: str) -> None:
    client = connect(url)
    statuses = ("completed", "failed", "cancelled")
    with client.pipeline(transaction=False) as pipe:
        for i in range(RUNS):
            pipe.zadd(keys.runs_by_status(statuses[i % 3]), {keys.run(f"{i:064x}"): i})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    for i in range(500):
        StepMetrics(client).record_step(("EFFECT", "SEQUENCE", "LAYER")[i % 3], "completed", (i % 97) / 10)
    queue = Queue("parked", connection=connect(url, decode=False), serializer=JSONSerializer)
    queue.enqueue_many([Queue.prepare_data("time.sleep", (0,)) for _ in range(QUEUED)])


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-ops-") as tmp:
        work = Path(tmp)
        redis = start_redis(work / "redis")
        url = f"{redis.url}/5"
        env = {"REDIS_URL": url, "CACHE_DIR": str(work / "cache"), "DATA_DIR": str(work / "data"), "SECRET_KEY": "b",
               "SAMPLE_ASSETS": "0"}
        worker = python_process(["worker.py", "steps", "runs", "default"], env, log=work / "worker.log")
        try:
            settings = Settings(redis_url=url, cache_dir=work / "cache", data_dir=work / "data", secret_key="b",
                                metrics_token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
                                ready_max_queue=QUEUED * 10)
            state = StateManager(connect(url))
            app = create_app(settings, state=state)
            client = app.test_client()
            wait_for(lambda: client.get("/readyz").status_code == 200, what="a registered worker", timeout=30)
            _fill(url)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert client.get("/metrics", headers=auth).status_code == 200
            ping = _p50_ms(state.redis.ping)
            healthz = _p50_ms(lambda: client.get("/healthz"))
            metrics = _p50_ms(lambda: client.get("/metrics", headers=auth))
            readyz = _p50_ms(lambda: client.get("/readyz"))
        finally:
            stop_process(worker)
            redis.stop()
    return [
        {"benchmark": f"GET /metrics p50 ({RUNS:,} runs, {QUEUED:,} queued)", "l1": metrics, "baseline": healthz,
         "ratio": metrics / healthz, "goal": "≤ 50 ms", "unit": "ms (baseline: /healthz)"},
        {"benchmark": "GET /readyz p50", "l1": readyz, "baseline": ping, "ratio": readyz / ping,
         "goal": "≤ 10 ms", "unit": "ms (baseline: Redis PING)"},
    ]
