"""What operators measure: the facts behind `/metrics`, `/readyz` and `/admin/status`.

Everything is read from Redis when asked (at scrape time), never kept in process globals: the
web app may run several processes, the workers run elsewhere, and tests build many apps. Each
app gets its own `CollectorRegistry` holding one collector that reads Redis on `collect()`.

The workers write the one thing Redis would not otherwise hold: a histogram of step durations
by node type (`StepMetrics.record_step` in `state/metrics.py`), as plain counters in one hash, so
a scrape costs a few reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from l1web.jobs.queues import QUEUES
from l1web.runs.model import RunStatus
from l1web.state import StateManager
from l1web.state.metrics import STEP_BUCKETS, StepMetrics
from l1web.state.metrics import bound as _bound

#: Content type of the Prometheus text exposition format we serve.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class StepHistogram:
    """Cumulative buckets (as Prometheus wants them), sum and count of one node type."""

    node_type: str
    buckets: list[tuple[str, int]]
    total: float
    outcomes: dict[str, int]

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0


def step_histograms(metrics: StepMetrics) -> list[StepHistogram]:
    raw = metrics.fields()
    by_type: dict[str, dict[str, str]] = {}
    for field, value in raw.items():
        node, _, name = field.partition("|")
        by_type.setdefault(node, {})[name] = value
    out = []
    for node, values in sorted(by_type.items()):
        running, buckets = 0, []
        for bound in STEP_BUCKETS:
            running += int(values.get(f"le:{_bound(bound)}", 0))
            buckets.append((_bound(bound), running))
        outcomes = {name.removeprefix("outcome:"): int(v) for name, v in values.items() if name.startswith("outcome:")}
        out.append(StepHistogram(node, buckets, float(values.get("sum", 0)), outcomes))
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# Read by the web app ------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    name: str
    state: str
    queues: list[str]
    current_job: str | None
    last_heartbeat: str | None
    successful: int
    failed: int
    hostname: str | None = None
    pid: int | None = None


def workers(rq_connection: redis.Redis) -> list[WorkerInfo]:
    """The RQ workers registered now (a worker unregisters when it stops; a killed one's
    registration lapses with its heartbeat)."""
    found = []
    for worker in Worker.all(connection=rq_connection, serializer=JSONSerializer):
        beat = worker.last_heartbeat
        found.append(WorkerInfo(
            name=worker.name, state=str(worker.get_state()), queues=[q.name for q in worker.queues],
            current_job=worker.get_current_job_id(),
            last_heartbeat=beat.isoformat(timespec="seconds") if beat else None,
            successful=int(worker.successful_job_count or 0), failed=int(worker.failed_job_count or 0),
            hostname=worker.hostname, pid=worker.pid,
        ))
    return sorted(found, key=lambda w: w.name)


def live_workers(rq_connection: redis.Redis) -> int:
    """Registered workers whose record has not expired, in two round trips (for /readyz)."""
    from rq.worker_registration import get_keys

    worker_keys = sorted(get_keys(connection=rq_connection))
    with rq_connection.pipeline(transaction=False) as pipe:
        for key in worker_keys:
            pipe.exists(key)
        return sum(pipe.execute())


@dataclass(frozen=True)
class QueueInfo:
    name: str
    queued: int
    started: int
    failed: int


def queues(rq_connection: redis.Redis) -> list[QueueInfo]:
    names = set(QUEUES) | {q.name for q in Queue.all(connection=rq_connection, serializer=JSONSerializer)}
    out = []
    for name in sorted(names):
        queue = Queue(name, connection=rq_connection, serializer=JSONSerializer)
        out.append(QueueInfo(
            name, queue.count,
            StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        ))
    return out


def queue_depths(rq_connection: redis.Redis) -> dict[str, int]:
    """Waiting jobs per queue in two round trips (what /readyz needs, without the registries)."""
    names = sorted(set(QUEUES) | {_text(k).removeprefix(Queue.redis_queue_namespace_prefix)
                                         for k in rq_connection.smembers(Queue.redis_queues_keys)})
    with rq_connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        return dict(zip(names, pipe.execute(), strict=True))


@dataclass(frozen=True)
class Storage:
    items: int
    bytes: int
    disk_free: int | None
    disk_total: int | None


def storage(state: StateManager, cache_dir: Path) -> Storage:
    stats = state.cache.stats()
    free: int | None
    total: int | None
    try:
        usage = shutil.disk_usage(cache_dir if cache_dir.exists() else cache_dir.parent)
        free, total = usage.free, usage.total
    except OSError:
        free = total = None
    return Storage(stats.get("items_stored", 0), stats.get("bytes_stored", 0), free, total)


# Prometheus -------------------------------------------------------------------------------------
class L1Collector(Collector):
    """Reads every family from Redis at scrape time."""

    def __init__(self, state: StateManager, rq_connection: redis.Redis, cache_dir: Path) -> None:
        self.state, self.rq, self.cache_dir = state, rq_connection, cache_dir

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("l1_runs", "Runs stored, by status.", labels=["status"])
        for status, count in self.state.runs.count_by_status([s.value for s in RunStatus]).items():
            runs.add_metric([status], count)
        yield runs

        durations = HistogramMetricFamily("l1_step_duration_seconds",
                                          "Seconds a step job took in a worker, by node type.", labels=["node_type"])
        outcomes = CounterMetricFamily("l1_steps", "Step jobs finished, by node type and outcome.",
                                       labels=["node_type", "outcome"])
        for histogram in step_histograms(self.state.step_metrics):
            durations.add_metric([histogram.node_type], histogram.buckets, histogram.total)
            for outcome, count in sorted(histogram.outcomes.items()):
                outcomes.add_metric([histogram.node_type, outcome], count)
        yield durations
        yield outcomes

        stats = self.state.cache.stats()
        yield CounterMetricFamily("l1_cache_hits", "Steps whose output was reused from the cache.",
                                  value=stats.get("cache_hits", 0))
        yield CounterMetricFamily("l1_cache_misses", "Steps that had to be rendered.",
                                  value=stats.get("cache_misses", 0))
        stored = storage(self.state, self.cache_dir)
        yield GaugeMetricFamily("l1_cache_items", "Items in the content store.", value=stored.items)
        yield GaugeMetricFamily("l1_cache_bytes", "Bytes in the content store.", value=stored.bytes)
        if stored.disk_free is not None:
            yield GaugeMetricFamily("l1_cache_disk_free_bytes", "Free bytes on CACHE_DIR's filesystem.",
                                    value=stored.disk_free)

        depth = GaugeMetricFamily("l1_queue_jobs", "RQ jobs by queue and state.", labels=["queue", "state"])
        for queue in queues(self.rq):
            depth.add_metric([queue.name, "queued"], queue.queued)
            depth.add_metric([queue.name, "started"], queue.started)
            depth.add_metric([queue.name, "failed"], queue.failed)
        yield depth

        by_state: dict[str, int] = {}
        for worker in workers(self.rq):
            by_state[worker.state] = by_state.get(worker.state, 0) + 1
        alive = GaugeMetricFamily("l1_workers", "RQ workers registered, by state.", labels=["state"])
        for name in sorted(set(by_state) | {"idle", "busy"}):
            alive.add_metric([name], by_state.get(name, 0))
        yield alive


def registry_for(state: StateManager, rq_connection: redis.Redis, cache_dir: Path) -> CollectorRegistry:
    """A registry of this app's own: nothing is registered in prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(L1Collector(state, rq_connection, cache_dir))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
