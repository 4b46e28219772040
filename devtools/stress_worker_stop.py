"""Stop real workers right after they start, many times, and report any that do not exit.

    .venv/bin/python devtools/stress_worker_stop.py [ROUNDS]

Each round starts `python worker.py` on a redis-server of its own, waits until the worker shows
as registered, sends SIGTERM to its pid alone (as `docker stop` does) after a random 0-150 ms,
and gives it 20 s to exit. A worker that does not is reported with its log and the state of its
processes, then killed. This found the lost scheduler stop (`L1Worker.stop_scheduler`): 2 hung
workers in 95 rounds before the fix. A diagnostic, not a test: it takes seconds per round.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l1web.devtools.processes import RedisServer, python_process  # noqa: E402
from l1web.state import connect  # noqa: E402

EXIT_WITHIN = 20.0


def process_states(pid: int) -> str:
    """`pid` and its children: state and kernel wait channel, from /proc."""
    lines = []
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for each in [pid, *(int(p) for p in (children.read_text().split() if children.exists() else []))]:
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
            wchan = Path(f"/proc/{each}/wchan").read_text()
        except OSError:
            continue
        lines.append(f"  pid {each}: state {stat.rsplit(')', 1)[1].split()[0]}, waiting in {wchan or '-'}")
    return "\n".join(lines)


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    base = Path(tempfile.mkdtemp(prefix="stress-worker-stop-"))
    server = RedisServer(base / "redis", aof=False).start()
    url = f"{server.url}/0"
    client = connect(url)
    env = {"REDIS_URL": url, "CACHE_DIR": str(base / "cache"), "DATA_DIR": str(base / "data"),
           "SECRET_KEY": "stress-" * 6, "SAMPLE_ASSETS": "0"}
    hung = 0
    try:
        for number in range(1, rounds + 1):
            client.flushdb()
            log = base / f"worker-{number}.log"
            proc = python_process(["worker.py"], env, log=log)
            while not client.smembers("rq:workers"):
                if proc.poll() is not None:
                    print(f"round {number}: the worker exited on its own:\n{log.read_text()}")
                    return 1
                time.sleep(0.005)
            time.sleep(random.uniform(0, 0.15))
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(EXIT_WITHIN)
                log.unlink()
            except subprocess.TimeoutExpired:
                hung += 1
                print(f"round {number}: no exit within {EXIT_WITHIN:.0f} s of SIGTERM\n{process_states(proc.pid)}\n"
                      f"{log.read_text()}", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if number % 10 == 0:
                print(f"{number} rounds, {hung} hung", flush=True)
    finally:
        server.stop()
    print(f"{rounds} rounds: {hung} workers did not exit within {EXIT_WITHIN:.0f} s of SIGTERM")
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
