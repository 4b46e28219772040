"""Start and stop a local js-ipfs node (npm `ipfs`, see package.json) for tests and `make run`.

The node is private to this machine: its repo lives under the given directory, every address
(RPC API, gateway, gRPC, swarm) is on 127.0.0.1, it has no bootstrap peers, MDNS and the
WebRTC-star discovery are off, preload is off, and it runs `--offline`, so it never reaches the
internet. Started in its own session so the caller's signals never reach it by accident.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from l1web.devtools.processes import free_port, wait_for
from l1web.ipfs.client import IPFSClient, IPFSError
from l1web.paths import ROOT

#: The js-ipfs command line installed by `npm install`.
JSIPFS = ROOT / "node_modules" / ".bin" / "jsipfs"
#: Seconds to wait for `jsipfs init` and for the daemon to answer (it is ready in 4–6 s).
INIT_TIMEOUT, START_TIMEOUT = 60.0, 60.0
#: Seconds the daemon gets to exit after `shutdown` before it is killed.
STOP_TIMEOUT = 10.0


def available() -> bool:
    return JSIPFS.is_file()


@dataclass
class IPFSDaemon:
    """A js-ipfs daemon with its repo under `repo`, its RPC API on `api_port` (free port if 0)."""

    repo: Path
    api_port: int = 0
    log: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, timeout: float = 30.0) -> IPFSClient:
        return IPFSClient(self.api, timeout=timeout)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "IPFS_PATH": str(self.repo), "IPFS_MONITORING": "", "DEBUG": ""}

    def init(self) -> None:
        """Create the repo once (profile `test`: no bootstrap, no MDNS) and pin every address to loopback."""
        if not available():
            raise IPFSError(f"js-ipfs is not installed ({JSIPFS} missing): run `npm install`")
        config_path = self.repo / "config"
        if not config_path.is_file():
            self.repo.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(JSIPFS), "init", "--profile", "test"], env=self._env(), cwd=ROOT, check=True,
                           timeout=INIT_TIMEOUT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        config = json.loads(config_path.read_text())
        self.api_port = self.api_port or free_port()
        config.setdefault("Addresses", {}).update({
            "API": f"/ip4/127.0.0.1/tcp/{self.api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "RPC": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "Swarm": [f"/ip4/127.0.0.1/tcp/{free_port()}"],
            "Announce": [], "NoAnnounce": [], "Delegates": [],
        })
        config["Bootstrap"] = []
        discovery = config.setdefault("Discovery", {})
        discovery["MDNS"] = {"Enabled": False, "Interval": 10}
        discovery["webRTCStar"] = {"Enabled": False}
        config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> IPFSDaemon:
        self.init()
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps its copy
        try:
            self.proc = subprocess.Popen(
                [str(JSIPFS), "daemon", "--offline", "--enable-preload=false"], env=self._env(), cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log:
                out.close()
        client = self.client(timeout=2)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise_exited(self)
            return bool(client.version())

        wait_for(ready, timeout=START_TIMEOUT, what=f"js-ipfs daemon on port {self.api_port}")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.client(timeout=3).shutdown()
        except IPFSError:
            pass
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        _remove_stale_lock(self.repo)


def raise_exited(daemon: IPFSDaemon) -> None:
    tail = daemon.log.read_text(errors="replace")[-500:] if daemon.log and daemon.log.is_file() else ""
    raise IPFSError(f"js-ipfs daemon exited with code {daemon.proc.returncode}: {tail}")


def _remove_stale_lock(repo: Path) -> None:
    """A killed js-ipfs leaves `repo.lock` behind, which would stop the next start."""
    lock = repo / "repo.lock"
    if lock.exists():
        time.sleep(0.1)
        try:
            lock.unlink() if lock.is_file() else lock.rmdir()
        except OSError:
            pass
