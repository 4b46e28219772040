"""Where a burst job's CPU goes: by process, and inside the workers by function (issue 19).

    .venv/bin/python bench/profile_burst.py [--rounds N] [--raw] [--sample]

Runs the 50-job burst of `bench_small_jobs.py` (its own redis-server, dev L2, `python app.py` and
2 `python worker.py`) `--rounds` times and prints the CPU each process spent per job (`/proc`
through psutil: the web app, the workers with their horses, redis-server, this client) beside
the in-process render of the same image.

`--raw` follows each burst with the same renders as plain RQ jobs on the same workers
(`bench_small_jobs.raw_jobs`: no HTTP, run, plan or store), measured the same way: the queue's
own floor beside L1's figures.

`--sample` also samples the workers' CPU by function: each worker process (and every horse it
forks) gets a `SIGPROF` timer through a `sitecustomize.py` on `PYTHONPATH`, so a sample falls
where CPU time is spent (not where a thread waits, as a wall-clock sampler such as py-spy
counts, nor inflated per call, as cProfile is), and each function's share of the samples is
scaled by the workers' measured CPU per job. Samples are taken in the main thread only, and a
C function's time counts for the Python frame that called it. A diagnostic, not a benchmark:
`make bench` does not run it.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_small_jobs as small  # noqa: E402

#: Written into a temp dir on the workers' PYTHONPATH: a CPU-time sampler for `worker.py` and its forks.
SAMPLER = '''
import collections, os, signal, sys, threading, time
_dir = os.environ.get("L1_CPU_SAMPLES")
_counts = collections.Counter()

def _key(frame):
    parts = []
    while frame is not None:
        code = frame.f_code
        parts.append(f"{code.co_name} ({os.path.basename(code.co_filename)})")
        frame = frame.f_back
    return ";".join(reversed(parts))

def _sample(signum, frame):
    _counts[_key(frame)] += 1

def _dump():
    while True:
        time.sleep(0.5)
        lines = [f"{k}\\t{v}\\n" for k, v in list(_counts.items())]
        tmp = f"{_dir}/{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            out.writelines(lines)
        os.replace(tmp, f"{_dir}/{os.getpid()}.txt")

def _start():
    _counts.clear()
    signal.signal(signal.SIGPROF, _sample)
    signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
    threading.Thread(target=_dump, daemon=True).start()

if _dir and sys.argv and sys.argv[0].endswith("worker.py"):
    _start()
    os.register_at_fork(after_in_child=_start)
'''


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (a child that exited is in its parent's)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def redis_pid(bench: small.Bench) -> int:
    port = bench.redis.url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "redis-server" and any(port in part for part in proc.info["cmdline"] or []):
            return proc.pid
    raise RuntimeError("the bench's redis-server is not found")


def read_samples(folder: Path) -> collections.Counter[str]:
    stacks: collections.Counter[str] = collections.Counter()
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition("\t")
            stacks[stack] += int(count)
    return stacks


def by_function(stacks: collections.Counter[str]) -> collections.Counter[str]:
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        for frame in set(stack.split(";")):
            inclusive[frame] += count
    return inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="bursts measured (after one to warm up)")
    parser.add_argument("--sample", action="store_true", help="sample the workers' CPU by function")
    parser.add_argument("--top", type=int, default=40, help="functions listed with --sample")
    parser.add_argument("--raw", action="store_true",
                        help="after each burst, the same renders as raw RQ jobs on the same workers "
                             "(the queue's floor)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="l1-profile-burst-") as tmp:
        work = Path(tmp)
        samples = work / "samples"
        samples.mkdir()
        if args.sample:
            (work / "site").mkdir()
            (work / "site" / "sitecustomize.py").write_text(SAMPLER)
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
            os.environ["L1_CPU_SAMPLES"] = str(samples)
        # Enough tokens for every round (the default bucket holds 200 submissions).
        bench = small.Bench(work, {"RUN_RATE_BURST": str(small.BURST * (args.rounds + 2))})
        try:
            bench.start_workers(small.WORKERS)
            small.burst(bench, [bench.fresh(small.SMALL) for _ in range(small.BURST)])  # warm-up
            pids = {"web": bench.web.pid, "redis": redis_pid(bench)}
            rounds = [[bench.fresh(small.SMALL) for _ in range(small.BURST)] for _ in range(args.rounds)]
            time.sleep(1.0)  # the samplers' files now hold the start-up and warm-up: the baseline
            before = read_samples(samples)
            totals: collections.Counter[str] = collections.Counter()
            def cpu_now() -> dict[str, float]:
                return {"web": tree_cpu(pids["web"]), "workers": sum(tree_cpu(w.pid) for w in bench.workers),
                        "redis": tree_cpu(pids["redis"]), "client": sum(os.times()[:2])}

            def report(what: str, wall: float, ideal: float, start: dict[str, float], client_extra: float) -> dict:
                spent = cpu_now()
                per_job = {k: (spent[k] - start[k]) * 1000 / small.BURST for k in start}
                per_job["client"] -= client_extra * 1000
                print(f"{what}: wall {wall:.3f} s ÷ {ideal:.3f} s = {wall / ideal:.2f}; CPU per job "
                      + ", ".join(f"{k} {v:.2f}" for k, v in per_job.items())
                      + f" ms; total {sum(per_job.values()):.2f} ms (in-process render {local * 1000:.2f} ms)")
                return per_job

            for images in rounds:
                start = cpu_now()
                got = small.burst(bench, images)
                local = got["ideal"] * small.WORKERS / small.BURST  # p50 of these images' in-process render
                # `burst` took that baseline in this process, in the window: not the client's.
                totals.update(report("burst", got["wall"], got["ideal"], start, local))
                if args.raw:
                    start = cpu_now()
                    wall = small.raw_jobs(bench, [path for _, path in images])
                    report("  raw RQ jobs, same renders", wall, got["ideal"], start, 0.0)
            worker_ms = totals["workers"] / args.rounds
            if args.sample:
                time.sleep(1.0)
                stacks = read_samples(samples)
                stacks.subtract(before)
                stacks = collections.Counter({k: v for k, v in stacks.items() if v > 0})
                count = sum(stacks.values())
                print(f"\nworkers' CPU per job by function (inclusive; {count} samples scaled to "
                      f"{worker_ms:.2f} ms, the workers' measured CPU per job):")
                for frame, hits in by_function(stacks).most_common(args.top):
                    print(f"  {hits / count * worker_ms:7.3f} ms  {frame}")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
