"""What each L1 process checks and prepares when it starts: its tools, Redis, the sample assets.

The web app (`python app.py`), every worker (`python worker.py`) and the launcher (`make run`)
call these first. A missing tool is one line on stderr, naming what is missing and how to get
it, and exit status 1 — never a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import redis

from l1web.engine import ffmpeg
from l1web.settings import Settings

log = logging.getLogger(__name__)

#: Seconds a start-up Redis ping may take.
PING_TIMEOUT = 3.0
#: How to get a Redis, for the one-line message.
REDIS_HINT = "start one (apt-get install redis-server), or use `make run`, which starts its own"


class StartupError(RuntimeError):
    """Something a process needs is missing; the message is the one line to print."""


def fail(role: str, message: str) -> NoReturn:
    """Print `L1 <role>: <message>` on stderr and exit 1 (no traceback)."""
    print(f"L1 {role}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def check_tools(settings: Settings) -> dict[str, str]:
    """Use the settings' tool paths; {"ffmpeg": path, "ffmpeg_source": …, "probe": …} or StartupError."""
    ffmpeg.configure(settings)
    try:
        path, source = ffmpeg.ffmpeg_source()
        probe = ffmpeg.prober()
    except ffmpeg.FFmpegError as exc:
        raise StartupError(str(exc)) from None
    return {"ffmpeg": path, "ffmpeg_source": source, "probe": probe}


def safe_url(url: str) -> str:
    """A Redis URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check_redis(url: str) -> None:
    """StartupError (one line) unless the Redis at `url` answers."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT, socket_timeout=PING_TIMEOUT).ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise StartupError(f"Redis at {safe_url(url)} does not answer ({exc}): {REDIS_HINT}") from None


def make_samples(settings: Settings) -> dict[str, str] | None:
    """The sample assets, made once by whichever server starts first (SAMPLE_ASSETS=0: skipped).

    A worker on another host with its own cache (`L1_SERVER_URL`) never makes them: its files
    are not the server's, and a sample made there (another ffmpeg, other bytes) would rename
    the server's asset to a digest the server does not hold.
    """
    if not settings.sample_assets or settings.l1_server_url:
        return None
    from l1web.samples import ensure_samples_once
    from l1web.state import StateManager
    from l1web.store import ContentStore

    state = StateManager.from_url(settings.redis_url)
    try:
        found = ensure_samples_once(ContentStore(settings.cache_dir, state.cache), state)
    except ffmpeg.FFmpegError as exc:
        raise StartupError(f"could not make the sample assets: {exc}") from None
    if found:
        log.info("sample assets: %s", ", ".join(f"{name} {digest[:12]}" for name, digest in found.items()))
    return found


def prepare(settings: Settings, role: str, *, redis_required: bool) -> None:
    """A server's start: tools, Redis, samples; on anything missing, one line and exit 1.

    Without Redis a worker cannot work, so it stops; the web app says so in one line and serves
    anyway (`/healthz` needs no Redis, and pages answer 503 until Redis is back).
    """
    try:
        check_tools(settings)
        try:
            check_redis(settings.redis_url)
        except StartupError as exc:
            if redis_required:
                raise
            print(f"L1 {role}: {exc}", file=sys.stderr, flush=True)
            return
        make_samples(settings)
    except StartupError as exc:
        fail(role, str(exc))
