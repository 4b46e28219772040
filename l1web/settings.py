"""The one settings object, read once from the environment (and `.env`).

Nothing else in L1 reads `os.environ`: tests build a `Settings` directly, the launcher and
`create_app` build one with `Settings.from_env()`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

#: Default Redis: database 5 of a local server, as in the seed.
DEFAULT_REDIS_URL = "redis://localhost:6379/5"
#: Default port of the web server.
DEFAULT_PORT = 8100
#: Largest accepted upload, in bytes (4 GiB).
DEFAULT_MAX_UPLOAD = 4 * 1024**3
#: Seconds an unfinished resumable upload is kept after its last PATCH (24 h).
DEFAULT_UPLOAD_EXPIRY = 24 * 3600
#: Seconds between two sweeps of expired resumable uploads, across all web processes (10 min).
DEFAULT_UPLOAD_SWEEP_INTERVAL = 600.0
#: Bytes one user's unfinished resumable uploads may announce together (8 GiB).
DEFAULT_UPLOAD_INFLIGHT_BYTES = 8 * 1024**3
#: Items per page in paginated listings when the client does not say.
DEFAULT_PAGE_SIZE = 50
#: Seconds L1 waits for an L2 to answer a token verification (connect and read each).
DEFAULT_L2_TIMEOUT = 3.0
#: Sign-in attempts (and L2 verifications) per client address per minute.
DEFAULT_AUTH_RATE_LIMIT = 30
#: Run submissions per user, and per client address: a token bucket holding a batch script's
#: burst (`RUN_RATE_BURST`), refilled by `RUN_RATE_LIMIT` tokens a minute.
DEFAULT_RUN_RATE_LIMIT = 60
DEFAULT_RUN_RATE_BURST = 200
#: Seconds one render step's ffmpeg may run before it is killed with its process group (6 h).
DEFAULT_STEP_TIMEOUT = 6 * 3600.0
#: Jobs waiting in any one queue above which /readyz answers 503 (the node is saturated).
DEFAULT_READY_MAX_QUEUE = 1000
#: Seconds L1 waits for an L2 to answer a publication (connect and read each).
DEFAULT_L2_PUBLISH_TIMEOUT = 10.0
#: Seconds a browser session lasts at most (7 days); never longer than the L2 token.
DEFAULT_SESSION_TTL = 7 * 24 * 3600
#: Seconds between a busy worker's heartbeats (RQ's job monitoring interval).
DEFAULT_WORKER_HEARTBEAT = 5
#: Seconds after a missed heartbeat before a worker's job counts as abandoned (RQ's is 60).
DEFAULT_WORKER_ABANDON_GRACE = 30
#: Seconds between a worker's sweeps for abandoned jobs (RQ's default is 10 minutes).
DEFAULT_WORKER_MAINTENANCE = 30
#: Jobs one work horse runs, one after another, before it exits and a new one is forked (1: a
#: fresh process per job, as RQ does). A horse that dies fails only the job it was running.
DEFAULT_WORKER_HORSE_JOBS = 100
#: Further attempts of a step that failed for an infrastructure reason (killed, lost, timed out, disk full).
DEFAULT_STEP_RETRIES = 2
#: Failed steps of one run after which a worker is given none of that run's steps (0: never).
DEFAULT_WORKER_BLOCKLIST_AFTER = 2
#: Steps (and plans) one user may have running at once; 0: no cap (fair share alone).
DEFAULT_USER_MAX_RUNNING = 0
#: Highest run priority an owner may set (admins: any within PRIORITY_RANGE).
DEFAULT_USER_MAX_PRIORITY = 0
#: Seconds one IPFS RPC call may take (a missing CID on an offline node would block for ever).
DEFAULT_IPFS_TIMEOUT = 20.0
#: Seconds of video per chunk when a frame-wise step is split (0: never split; engine/chunks.py).
DEFAULT_CHUNK_SECONDS = 10.0
#: Videos at most this long (seconds) are rendered in one piece.
DEFAULT_CHUNK_MIN_SECONDS = 30.0
#: Name of this node's key in the IPFS keystore; its IPNS name is what peers list in IPNS_PEERS.
DEFAULT_IPNS_KEY = "artdag-l1"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.replace(",", " ").split() if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Every configurable value of L1; `.env.example` lists them with their defaults."""

    l1_public_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    l2_servers: tuple[str, ...] = ()
    redis_url: str = DEFAULT_REDIS_URL
    cache_dir: Path = Path("~/.artdag/cache").expanduser()
    data_dir: Path = Path("~/.artdag").expanduser()
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    ipns_sync_interval: float = 0.0
    ipfs_api: str = ""
    ipfs_timeout: float = DEFAULT_IPFS_TIMEOUT
    ipfs_daemon: bool = False
    ipns_key: str = DEFAULT_IPNS_KEY
    ipns_peers: tuple[str, ...] = ()
    worker_token: str = ""
    l1_server_url: str = ""
    admin_users: tuple[str, ...] = ()
    secret_key: str = ""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    import_roots: tuple[Path, ...] = ()
    upload_expiry: int = DEFAULT_UPLOAD_EXPIRY
    upload_sweep_interval: float = DEFAULT_UPLOAD_SWEEP_INTERVAL
    upload_inflight_bytes: int = DEFAULT_UPLOAD_INFLIGHT_BYTES
    page_size: int = DEFAULT_PAGE_SIZE
    l2_timeout: float = DEFAULT_L2_TIMEOUT
    auth_rate_limit: int = DEFAULT_AUTH_RATE_LIMIT
    run_rate_limit: int = DEFAULT_RUN_RATE_LIMIT
    run_rate_burst: int = DEFAULT_RUN_RATE_BURST
    png_encoding: str = "fast"
    session_ttl: int = DEFAULT_SESSION_TTL
    worker_heartbeat: int = DEFAULT_WORKER_HEARTBEAT
    worker_abandon_grace: int = DEFAULT_WORKER_ABANDON_GRACE
    worker_maintenance: int = DEFAULT_WORKER_MAINTENANCE
    worker_horse_jobs: int = DEFAULT_WORKER_HORSE_JOBS
    step_timeout: float = DEFAULT_STEP_TIMEOUT
    step_retries: int = DEFAULT_STEP_RETRIES
    worker_blocklist_after: int = DEFAULT_WORKER_BLOCKLIST_AFTER
    user_max_running: int = DEFAULT_USER_MAX_RUNNING
    user_max_priority: int = DEFAULT_USER_MAX_PRIORITY
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    chunk_min_seconds: float = DEFAULT_CHUNK_MIN_SECONDS
    ready_max_queue: int = DEFAULT_READY_MAX_QUEUE
    metrics_token_sha256: str = ""
    notify_allow_private: bool = False
    notify_retry_intervals: tuple[int, ...] = (10, 60, 300, 1800)
    notify_timeout: float = 10.0
    l2_publish_timeout: float = DEFAULT_L2_PUBLISH_TIMEOUT
    #: Address of the reverse proxy whose `X-Forwarded-For`/`-Proto` waitress believes (none by default).
    trusted_proxy: str = ""
    #: Paths of the ffmpeg / ffprobe binaries; empty: the system's, else imageio-ffmpeg's / PyAV.
    ffmpeg: str = ""
    ffprobe: str = ""
    #: Make the sample assets (`cat`, `testvideo`) at the first start of the web app or a worker.
    sample_assets: bool = True
    testing: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Settings from `environ` (default: the process environment, after loading `.env`)."""
        if environ is None:
            if dotenv:
                from dotenv import load_dotenv

                load_dotenv(override=False)
            environ = os.environ
        env = environ
        data_dir = Path(env.get("DATA_DIR", "~/.artdag")).expanduser()
        port = int(env.get("PORT", DEFAULT_PORT))
        return cls(
            l1_public_url=env.get("L1_PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/"),
            l2_servers=tuple(url.rstrip("/") for url in _split(env.get("L2_SERVER", ""))),
            redis_url=env.get("REDIS_URL", DEFAULT_REDIS_URL),
            cache_dir=Path(env.get("CACHE_DIR", str(data_dir / "cache"))).expanduser(),
            data_dir=data_dir,
            host=env.get("HOST", "127.0.0.1"),
            port=port,
            ipns_sync_interval=float(env.get("IPNS_SYNC_INTERVAL", "0")),
            ipfs_api=env.get("IPFS_API", ""),
            ipfs_timeout=float(env.get("IPFS_TIMEOUT", DEFAULT_IPFS_TIMEOUT)),
            ipfs_daemon=_bool(env.get("IPFS_DAEMON", "0")),
            ipns_key=env.get("IPNS_KEY", DEFAULT_IPNS_KEY),
            ipns_peers=_split(env.get("IPNS_PEERS", "")),
            worker_token=env.get("WORKER_TOKEN", ""),
            l1_server_url=env.get("L1_SERVER_URL", "").rstrip("/"),
            admin_users=_split(env.get("ADMIN_USERS", "")),
            secret_key=env.get("SECRET_KEY", ""),
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD)),
            import_roots=tuple(Path(p).expanduser() for p in _split(env.get("IMPORT_ROOTS", ""))),
            upload_expiry=int(env.get("UPLOAD_EXPIRY", DEFAULT_UPLOAD_EXPIRY)),
            upload_sweep_interval=float(env.get("UPLOAD_SWEEP_INTERVAL", DEFAULT_UPLOAD_SWEEP_INTERVAL)),
            upload_inflight_bytes=int(env.get("UPLOAD_INFLIGHT_BYTES", DEFAULT_UPLOAD_INFLIGHT_BYTES)),
            page_size=int(env.get("PAGE_SIZE", DEFAULT_PAGE_SIZE)),
            l2_timeout=float(env.get("L2_TIMEOUT", DEFAULT_L2_TIMEOUT)),
            auth_rate_limit=int(env.get("AUTH_RATE_LIMIT", DEFAULT_AUTH_RATE_LIMIT)),
            run_rate_limit=int(env.get("RUN_RATE_LIMIT", DEFAULT_RUN_RATE_LIMIT)),
            run_rate_burst=int(env.get("RUN_RATE_BURST", DEFAULT_RUN_RATE_BURST)),
            png_encoding=env.get("PNG_ENCODING", "fast").strip().lower() or "fast",
            session_ttl=int(env.get("SESSION_TTL", DEFAULT_SESSION_TTL)),
            worker_heartbeat=int(env.get("WORKER_HEARTBEAT", DEFAULT_WORKER_HEARTBEAT)),
            worker_abandon_grace=int(env.get("WORKER_ABANDON_GRACE", DEFAULT_WORKER_ABANDON_GRACE)),
            worker_maintenance=int(env.get("WORKER_MAINTENANCE", DEFAULT_WORKER_MAINTENANCE)),
            worker_horse_jobs=max(1, int(env.get("WORKER_HORSE_JOBS", DEFAULT_WORKER_HORSE_JOBS))),
            step_timeout=float(env.get("STEP_TIMEOUT", DEFAULT_STEP_TIMEOUT)),
            step_retries=max(0, int(env.get("STEP_RETRIES", DEFAULT_STEP_RETRIES))),
            worker_blocklist_after=max(0, int(env.get("WORKER_BLOCKLIST_AFTER", DEFAULT_WORKER_BLOCKLIST_AFTER))),
            user_max_running=max(0, int(env.get("USER_MAX_RUNNING", DEFAULT_USER_MAX_RUNNING))),
            user_max_priority=int(env.get("USER_MAX_PRIORITY", DEFAULT_USER_MAX_PRIORITY)),
            chunk_seconds=float(env.get("CHUNK_SECONDS", DEFAULT_CHUNK_SECONDS)),
            chunk_min_seconds=float(env.get("CHUNK_MIN_SECONDS", DEFAULT_CHUNK_MIN_SECONDS)),
            ready_max_queue=int(env.get("READY_MAX_QUEUE", DEFAULT_READY_MAX_QUEUE)),
            metrics_token_sha256=env.get("METRICS_TOKEN_SHA256", "").strip().lower(),
            notify_allow_private=_bool(env.get("NOTIFY_ALLOW_PRIVATE", "0")),
            notify_retry_intervals=tuple(int(p) for p in _split(env.get("NOTIFY_RETRY_INTERVALS", "10,60,300,1800"))),
            notify_timeout=float(env.get("NOTIFY_TIMEOUT", "10")),
            l2_publish_timeout=float(env.get("L2_PUBLISH_TIMEOUT", DEFAULT_L2_PUBLISH_TIMEOUT)),
            trusted_proxy=env.get("TRUSTED_PROXY", "").strip(),
            ffmpeg=env.get("FFMPEG", "").strip(),
            ffprobe=env.get("FFPROBE", "").strip(),
            sample_assets=_bool(env.get("SAMPLE_ASSETS", "1")),
            testing=_bool(env.get("TESTING", "0")),
        )

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some values replaced (tests use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]  # replace() checks the field names at run time

    def resolved_secret_key(self) -> str:
        """`SECRET_KEY`, or one generated once and kept in the data dir (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
