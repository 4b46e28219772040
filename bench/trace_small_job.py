"""Where one small job's time goes: each part of a fresh 451×300 invert, timestamped (issue 19).

Not a `bench_*` module (it prints a per-part table, not benchmark rows). It starts the same stack
as `bench_small_jobs.py` (redis-server, dev L2, `app.py`, 2 `worker.py`) with `L1_TRACE` set, so
every process appends `l1web.trace.mark` lines to one file, then submits `ROUNDS` fresh jobs one
at a time and, for each part between two consecutive marks, prints the median and range of its
duration and the Redis round trips the process made in it, beside the job's in-process time
(decode + invert + encode in this process, same settings) measured in the same round.

    .venv/bin/python bench/trace_small_job.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TRACE = Path(tempfile.mkdtemp(prefix="l1-trace-")) / "trace.log"
os.environ["L1_TRACE"] = str(TRACE)  # before l1web.trace is imported, here and in every child

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_small_jobs as small  # noqa: E402

from l1web import trace  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
#: Seconds between jobs, so that the last job's horse exit and the worker's next spare are done.
GAP = float(os.environ.get("TRACE_GAP", "0.5"))
#: Submit with `Prefer: wait` (as bench_small_jobs does) instead of `POST` then `GET ?wait=`.
PREFER = os.environ.get("TRACE_PREFER") == "1"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="l1-trace-small-") as tmp:
        bench = small.Bench(Path(tmp), {"L1_TRACE": str(TRACE)})
        try:
            bench.start_workers(small.WORKERS)
            local = []
            for _round in range(ROUNDS + small.WARMUP):
                digest, path = bench.fresh(small.SMALL)
                local.append(small.in_process_seconds(path, bench.work / "out.png"))
                time.sleep(GAP)
                trace.mark("client.submit")
                status, run = bench.submit(digest, wait=small.WAIT if PREFER else 0)
                trace.mark("client.answered")
                if status != 201:
                    raise RuntimeError(f"POST /runs: {status} {run}")
                if run.get("status") != "completed":
                    bench.wait(run["id"])
                trace.mark("client.saw_done")
                time.sleep(GAP)
                trace.mark("client.round_end")
        finally:
            bench.close()
    report(TRACE.read_text().splitlines(), local[small.WARMUP:])


def report(lines: list[str], local: list[float]) -> None:
    marks = []
    for line in lines:
        at, pid, trips, label = line.split(" ", 3)
        marks.append((float(at), int(pid), int(trips), label))
    marks.sort()
    rounds: list[list[tuple]] = []
    for mark in marks:
        if mark[3] == "client.submit":
            rounds.append([])
        if rounds:
            rounds[-1].append(mark)
    rounds = rounds[small.WARMUP:]
    # Per round: each label's first occurrence, its offset from the submit, and the round trips
    # its process made since that process's previous mark in the round.
    offsets: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, list[float]] = defaultdict(list)
    trips: dict[str, list[int]] = defaultdict(list)
    totals: dict[str, list[int]] = defaultdict(list)
    for marks_of_round in rounds:
        start = marks_of_round[0][0]
        seen: set[str] = set()
        last_by_pid: dict[int, int] = {}
        previous_at = start
        per_role: dict[str, int] = defaultdict(int)
        for at, pid, count, label in marks_of_round:
            if label in seen or label == "worker.waiting" and "worker.dequeued" not in seen:
                continue
            seen.add(label)
            offsets[label].append(at - start)
            steps[label].append(at - previous_at)
            made = count - last_by_pid.get(pid, count)
            trips[label].append(made)
            per_role[label.split(".")[0] if not label.startswith(("job", "plan", "step", "render", "store",
                                                                     "finish")) else "horse"] += made
            last_by_pid[pid] = count
            previous_at = at
        for role, count in per_role.items():
            totals[role].append(count)
    order = sorted(offsets, key=lambda label: statistics.median(offsets[label]))
    print(f"{len(rounds)} rounds; in-process decode+invert+encode: p50 {statistics.median(local) * 1000:.1f} ms "
          f"(range {min(local) * 1000:.1f}-{max(local) * 1000:.1f})")
    print(f"{'mark':28} {'at p50':>8} {'part p50':>9} {'part range':>15} {'redis':>6}  (ms; redis = round trips "
          "in the part, p50)")
    for label in order:
        part = [v * 1000 for v in steps[label]]
        print(f"{label:28} {statistics.median(offsets[label]) * 1000:8.1f} {statistics.median(part):9.1f} "
              f"{min(part):7.1f}-{max(part):7.1f} {statistics.median(trips[label]):6.0f}  (n={len(part)})")
    for role, counts in sorted(totals.items()):
        print(f"redis round trips by {role}: p50 {statistics.median(counts):.0f}")


if __name__ == "__main__":
    main()
