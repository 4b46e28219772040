"""Load: 200 clients submitting uploads and runs while 50 poll status fragments, for 60 s.

The real stack on loopback (`bench/loadgen.py`): a redis-server, the development L2 for Bearer
tokens, `python app.py` (waitress with app.py's settings) and two RQ worker processes. Each
submitter uploads a distinct 16×16 PNG, runs `invert` on it and checks the run once, then
thinks 20–40 s; each poller follows one run's status fragment every second until the run is
final (every fifth one polls the runs list fragment every 2 s instead). Afterwards every
acknowledged run is followed through the API until it is final (drain, at most 300 s).

Baselines, measured in the same run: latencies are shown beside `GET /healthz` (anonymous,
answered from the process alone: no Redis, no template) measured under the same load;
throughput beside what 32 closed-loop clients get from that same request before the load (the
server's capacity for its cheapest answer). RUN_RATE_LIMIT is raised for the load (all clients
share one address, and the limit counts per address); 429s are counted in their own row all
the same.

`python bench/bench_load.py` runs it alone; BENCH_LOAD_SUBMITTERS, BENCH_LOAD_POLLERS and
BENCH_LOAD_SECONDS scale it; BENCH_LOAD_JSON=path also writes the whole report as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import FLOOR_KINDS, NON_RENDER_KINDS, Profile, run_load  # noqa: E402

#: The issue's goal for non-render endpoints, in milliseconds.
P99_GOAL_MS = 500
#: Run submissions per user and per address per minute during the load (see the docstring).
RAISED_RUN_RATE_LIMIT = 1_000_000
#: Seconds every run gets to become final after the load.
DRAIN_SECONDS = 300.0


def profile_from_env() -> Profile:
    return Profile(
        submitters=int(os.environ.get("BENCH_LOAD_SUBMITTERS", Profile.submitters)),
        pollers=int(os.environ.get("BENCH_LOAD_POLLERS", Profile.pollers)),
        duration=float(os.environ.get("BENCH_LOAD_SECONDS", Profile.duration)),
        drain=DRAIN_SECONDS,
        env={"RUN_RATE_LIMIT": str(RAISED_RUN_RATE_LIMIT)},
    )


def rows() -> list[dict]:
    profile = profile_from_env()
    report = run_load(profile)
    if os.environ.get("BENCH_LOAD_JSON"):
        Path(os.environ["BENCH_LOAD_JSON"]).write_text(json.dumps(report, indent=1, default=str))
    return to_rows(report, profile)


def to_rows(report: dict, profile: Profile) -> list[dict]:
    load, kinds, runs = report["load"], report["load"]["kinds"], report["runs"]
    floor = kinds["floor_healthz"]
    capacity = report["capacity"]["kinds"]["capacity_healthz"]
    tag = f"load {profile.submitters}+{profile.pollers} clients {profile.duration:g} s"
    out = [{"benchmark": f"{tag}: requests/s, all kinds (baseline: GET /healthz capacity, 32 closed-loop clients)",
            "l1": load["per_second"], "baseline": capacity["per_second"],
            "ratio": load["per_second"] / capacity["per_second"], "goal": "", "unit": "req/s"}]
    for kind in (*NON_RENDER_KINDS, "floor_whoami"):
        if kind not in kinds:
            continue
        stats = kinds[kind]
        for pct in ("p50", "p95", "p99"):
            out.append({
                "benchmark": f"{tag}: {kind} {pct} ({stats['per_second']:.1f} req/s, {stats['requests']} requests)",
                "l1": stats[f"{pct}_ms"], "baseline": floor[f"{pct}_ms"],
                "ratio": stats[f"{pct}_ms"] / floor[f"{pct}_ms"],
                "goal": f"< {P99_GOAL_MS}" if pct == "p99" and kind not in FLOOR_KINDS else "",
                "unit": "ms (baseline: GET /healthz under the same load)"})
    total = load["total_requests"]
    for label, key, goal in (("responses 5xx", "5xx", "0"), ("transport failures (reset, timeout)",
                                                              "transport_failures", "0"),
                             ("responses 429 (rate limited)", "429", ""), ("responses 4xx other than 429", "4xx", "0"),
                             ("responses 2xx", "2xx", "")):
        out.append({"benchmark": f"{tag}: {label}", "l1": load[key], "baseline": total, "ratio": None,
                    "goal": goal, "unit": "responses (baseline: all requests)"})
    submitted = runs["runs"]
    for label, value, goal in (("runs lost", runs["lost"], "0"), ("runs stuck after the drain", runs["stuck"], "0"),
                               ("runs completed", runs["finals"].get("completed", 0), f"{submitted}"),
                               ("runs the API has that no client was told about", runs["unacknowledged"], "0"),
                               ("runs already final when the load ended", runs["final_when_load_ended"], "")):
        out.append({"benchmark": f"{tag}: {label}", "l1": value, "baseline": submitted, "ratio": None,
                    "goal": goal, "unit": "runs (baseline: runs submitted)"})
    out.append({"benchmark": f"{tag}: seconds until every run was final after the load", "l1": runs["drain_seconds"],
                "baseline": profile.drain, "ratio": None, "goal": f"<= {profile.drain:g}",
                "unit": "s (baseline: drain allowed)"})
    tracebacks = sum(report["tracebacks"].values())
    out.append({"benchmark": f"{tag}: tracebacks in the web and worker logs", "l1": tracebacks,
                "baseline": None, "ratio": None, "goal": "0", "unit": "tracebacks"})
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)
