"""The queue (issue 15): throughput with fair share on, and what fair share buys a second user.

Starts its own redis-server, the development L2, the web app and 2 real worker processes
(`bench_runs.Bench`), then measures, each beside a baseline from the same run:

- trivial one-step runs per second (every run goes through the fair-share pool, `state/fair.py`)
  ÷ raw RQ trivial jobs (`os.getpid`) per second on the same 2 workers (goal ≥ 0.5);
- fair share: `alice` submits 20 one-step runs, then `bob` 1; how many of alice's finished before
  bob's, beside the same 21 runs submitted by one user (first in, first out: the last one waits
  for all 20).

`python bench/bench_queue.py` runs it alone.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_runs import Bench, throughput  # noqa: E402
from l1web.runs.service import Submission  # noqa: E402
from l1web.users import User  # noqa: E402

#: Alice's runs queued before bob's one.
QUEUED = 20
#: Side of the images the fair-share runs blur (a fraction of a second each).
SIZE = (640, 480)


def finished_before(bench: Bench, first: list[str], last: str) -> int:
    bench.wait([*first, last])
    end = float(bench.state.runs.get(last)["finished"])
    return sum(1 for run_id in first if float(bench.state.runs.get(run_id)["finished"]) < end)


def fair_share(bench: Bench) -> list[dict]:
    bench.set_workers(2)
    images = [bench.image(1000 + n, SIZE) for n in range(2 * (QUEUED + 1))]
    alice, bob = User("alice"), User("bob")
    for user in (alice, bob):  # the bench owns the images; let the two users use them
        for digest in images:
            bench.state.cache.grant(digest, user.name)
    one_user = [bench.service.submit(Submission("blur", [d]), alice)[0]["id"] for d in images[:QUEUED + 1]]
    fifo = finished_before(bench, one_user[:-1], one_user[-1])
    alices = [bench.service.submit(Submission("blur", [d]), alice)[0]["id"] for d in images[QUEUED + 1:-1]]
    bobs = bench.service.submit(Submission("blur", [images[-1]]), bob)[0]["id"]
    fair = finished_before(bench, alices, bobs)
    return [{"benchmark": f"fair share: runs of alice's {QUEUED} done before bob's 1 (2 workers)",
             "l1": fair, "baseline": fifo, "ratio": fair / fifo if fifo else None, "goal": "< 4",
             "unit": "runs"}]


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-queue-") as tmp:
        bench = Bench(Path(tmp))
        try:
            return throughput(bench) + fair_share(bench)
        finally:
            bench.close()


if __name__ == "__main__":
    for row in rows():
        print(row)
