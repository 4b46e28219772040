"""Watching a render from inside: how far it is, what it printed, what it last made.

A `StepWatch` is handed to the renderers through a context variable (`watching`), so the node
renderers keep their signatures: `ffmpeg.ffmpeg` runs a watched ffmpeg with `-progress` and feeds
its key=value blocks and its stderr lines here; the numpy frame loop reports frames done. The
watch turns that into snapshots (frames, total_frames, out time, fps, speed, percent, ETA) and
log text, and hands both to its sink at most once per `interval` (the worker writes them to
Redis in one pipelined round trip; a sink's failure never fails a render). Both kinds of render
also keep a "last rendered" frame: the frame loop hands its frames (`frames_done`), a watched
ffmpeg video render keeps a small JPEG up to date that is picked up every few seconds
(`preview_file`). Pure Python: no Redis, no Flask.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: Seconds between two snapshots handed to the sinks while a step renders.
INTERVAL = 0.5
#: Seconds between two "last rendered" frames of a frame loop, their longest side and quality.
PREVIEW_INTERVAL, PREVIEW_SIZE, PREVIEW_QUALITY = 3.0, 320, 75
#: Longest log line kept, in characters (ffmpeg filter graphs can be long).
MAX_LINE = 2000
#: Text that stands for a secret in a log.
REDACTED = "[redacted]"
#: Credentials that could reach a log in some tool's output: bearer tokens and token parameters.
SECRET_PATTERNS = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+|((?:auth_token|token|password|secret)=)[^\s&\"']+")

#: A store path after shortening (`<cache>/ab/abcdef…64 hex`): kept to its first 12 hex digits.
DIGEST_PATH = re.compile(r"(<[a-z]+>)/[0-9a-f]{2}/([0-9a-f]{12})[0-9a-f]{52}")

_current: ContextVar[StepWatch | None] = ContextVar("l1_step_watch", default=None)


def current() -> StepWatch | None:
    """The watch of the step rendering in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def watching(watch: StepWatch | None) -> Iterator[StepWatch | None]:
    """Make `watch` the current one for the renders inside the block."""
    token = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(token)


class Redactor:
    """Shortens local paths and hides secrets in text bound for a log."""

    def __init__(self, paths: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        # Longest prefix first, so a work dir inside the cache dir gets its own short name.
        self.paths = sorted(((str(p), label) for p, label in (paths or {}).items() if str(p)),
                            key=lambda item: -len(item[0]))
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = SECRET_PATTERNS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)
        for path, label in self.paths:
            text = text.replace(path, label)
        return DIGEST_PATH.sub(r"\1/\2…", text)


def _number(value: str | None) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]  # None raises TypeError, answered below
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out >= 0 else None  # NaN and "N/A" are unknown


class StepWatch:
    """Progress and log of one step's render; thread-safe (ffmpeg's pipes are read by threads)."""

    def __init__(self, *, seconds: float | None = None, frames: int | None = None,
                 sink: Callable[[dict[str, Any], str], None] | None = None,
                 preview_sink: Callable[[bytes, float], None] | None = None,
                 redact: Callable[[str], str] | None = None,
                 interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, hold_first: bool = False) -> None:
        self.seconds = seconds if seconds and seconds > 0 else None
        self.total_frames = frames if frames and frames > 0 else None
        self._sink = sink
        self._preview_sink = preview_sink
        self._last_preview = float("-inf")
        self._preview_seen: tuple[int, int] | None = None
        self.preview_at: float | None = None
        self.redact = redact or Redactor()
        self.interval, self.clock, self.wall = interval, clock, wall
        self.started = clock()
        self._lock = threading.Lock()
        self._emitting = threading.Lock()
        # `hold_first`: the first emission waits (at most `interval`) for the caller to send it
        # with a round trip of its own (`take_first`), or to let it go (`release_first`).
        self._held = hold_first
        self._last_emit = self.started if hold_first else float("-inf")
        self._pending_log: list[str] = []
        self.frames = 0
        self.out_seconds = 0.0
        self.fps: float | None = None
        self.speed: float | None = None
        self.percent = 0.0
        self.state = "running"

    # What renderers report ---------------------------------------------------------------------
    def ffmpeg_progress(self, fields: Mapping[str, str]) -> None:
        """One block of ffmpeg's `-progress` output (`frame=…`, `out_time_us=…`, `progress=…`)."""
        with self._lock:
            frame = _number(fields.get("frame"))
            if frame is not None:
                self.frames = max(self.frames, int(frame))
            out_us = _number(fields.get("out_time_us")) or _number(fields.get("out_time_ms"))
            if out_us is not None:
                self.out_seconds = max(self.out_seconds, out_us / 1e6)
            fps = _number(fields.get("fps"))
            elapsed = self.clock() - self.started
            if fps:
                self.fps = fps
            elif elapsed > 0:  # ffmpeg says 0.00 in its first second, and frame=0 while its
                # encoder fills its lookahead: count the frames its output time stands for
                made = max(self.frames, self.out_seconds * self._rate())
                if made:
                    self.fps = round(made / elapsed, 2)
            speed = _number((fields.get("speed") or "").rstrip("x"))
            if speed:
                self.speed = speed
            self._advance()
        self._maybe_emit()

    def frames_done(self, count: int, frame: np.ndarray | None = None) -> None:
        """Frames written so far by a numpy frame loop; `frame` (the last one, an array) becomes
        the step's "last rendered" picture every `PREVIEW_INTERVAL` seconds."""
        if frame is not None and self._preview_sink is not None \
                and self.clock() - self._last_preview >= PREVIEW_INTERVAL:
            self._preview(frame)
        with self._lock:
            self.frames = max(self.frames, count)
            elapsed = self.clock() - self.started
            if elapsed > 0:
                self.fps = round(self.frames / elapsed, 2)
            self._advance()
        self._maybe_emit()

    @property
    def wants_preview(self) -> bool:
        """Whether this step keeps a "last rendered" frame (a watched ffmpeg then writes one)."""
        return self._preview_sink is not None

    def preview_file(self, path: Path) -> None:
        """A JPEG that a watched ffmpeg keeps overwriting with the frame it just rendered: handed
        to the preview sink when it changed, at most every `PREVIEW_INTERVAL` seconds. A picture
        caught while ffmpeg rewrites it (no JPEG end marker yet) waits for the next look."""
        if self._preview_sink is None or self.clock() - self._last_preview < PREVIEW_INTERVAL:
            return
        try:
            stat = path.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._preview_seen:
                return
            jpeg = path.read_bytes()
        except OSError:
            return  # not written yet
        if not (jpeg.startswith(b"\xff\xd8") and jpeg.rstrip(b"\0").endswith(b"\xff\xd9")):
            return
        self._preview_seen = (stat.st_mtime_ns, stat.st_size)
        self._last_preview = self.clock()
        self._publish_preview(jpeg)

    def _preview(self, frame: np.ndarray) -> None:
        self._last_preview = self.clock()
        try:
            import io

            from PIL import Image

            picture = Image.fromarray(frame)
            picture.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            out = io.BytesIO()
            picture.convert("RGB").save(out, "JPEG", quality=PREVIEW_QUALITY)
        except Exception:  # noqa: BLE001 - a preview must never fail the render
            log.warning("could not make a step's last rendered frame", exc_info=True)
            return
        self._publish_preview(out.getvalue())

    def _publish_preview(self, jpeg: bytes) -> None:
        assert self._preview_sink is not None
        try:
            at = round(self.wall(), 3)
            # The picture and its time go out together, so a page never links a picture that is
            # not there yet, nor misses one that is.
            self._preview_sink(jpeg, at)
            self.preview_at = at
        except Exception:  # noqa: BLE001 - a preview must never fail the render
            log.warning("could not keep a step's last rendered frame", exc_info=True)

    def command(self, argv: Iterable[str]) -> None:
        """The argument list of a process this step starts (local paths shortened)."""
        self.line("$ " + " ".join(_quote(a) for a in argv))

    def line(self, text: str) -> None:
        """A line for the step's log (the worker's own, or a tool's output)."""
        text = self.redact(text.rstrip("\n"))[:MAX_LINE]
        with self._lock:
            self._pending_log.append(text + "\n")
        self._maybe_emit()

    def finish(self, ok: bool) -> None:
        """The render ended: a last snapshot (100 % when it succeeded) and the log flushed."""
        with self._lock:
            self.state = "done" if ok else "failed"
            if ok:
                self.percent = 100.0
        self._maybe_emit(force=True)

    def finish_into(self, ok: bool) -> tuple[dict[str, Any], str]:
        """`finish`, handing the last snapshot and the log not yet sent back to the caller, which
        sends them with its own writes (the step's end: one round trip fewer, issue 19)."""
        with self._emitting, self._lock:
            self.state = "done" if ok else "failed"
            if ok:
                self.percent = 100.0
            self._held = False
            self._last_emit = self.clock()
            snap = self._snapshot()
            text, self._pending_log = "".join(self._pending_log), []
        return snap, text

    def take_first(self) -> tuple[dict[str, Any], str] | None:
        """The held first emission (snapshot, log so far), for the caller to send; None when it
        is not held (any more)."""
        with self._emitting, self._lock:
            if not self._held:
                return None
            self._held = False
            self._last_emit = self.clock()
            text, self._pending_log = "".join(self._pending_log), []
            return self._snapshot(), text

    def release_first(self) -> None:
        """Send the held first emission now, if nobody took it."""
        if self._held:
            self._held = False
            self._maybe_emit(force=True)

    # What the sinks get ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        elapsed = self.clock() - self.started
        eta = None
        if self.state == "running" and 0 < self.percent < 100:
            eta = max(round(elapsed * (100 - self.percent) / self.percent, 1), 0.1)
        return {
            "frames": self.frames, "total_frames": self.total_frames,
            "out_seconds": round(self.out_seconds, 3), "seconds": self.seconds,
            "percent": round(self.percent, 1), "fps": self.fps, "speed": self.speed,
            "eta": eta if self.state == "running" else 0.0 if self.state == "done" else None,
            "elapsed": round(elapsed, 3), "state": self.state, "updated": round(self.wall(), 3),
            "preview_at": self.preview_at,
        }

    def _rate(self) -> float:
        """Expected frames per second of output (0 when unknown)."""
        return self.total_frames / self.seconds if self.total_frames and self.seconds else 0.0

    def _advance(self) -> None:
        """Percent from frames (numpy loops, known frame count) or output time; never backwards."""
        if self.total_frames and self.frames:
            done = self.frames / self.total_frames
        elif self.seconds and self.out_seconds:
            done = self.out_seconds / self.seconds
        else:
            return
        # Below 100 until the render has really ended: estimates of the length can be short.
        self.percent = max(self.percent, min(done * 100, 99.9))

    def _maybe_emit(self, *, force: bool = False) -> None:
        if not force and self.clock() - self._last_emit < self.interval:
            return  # the common case (a frame loop reports every frame): no lock taken
        # One emission at a time, so the sinks never see an older snapshot after a newer one.
        with self._emitting:
            with self._lock:
                now = self.clock()
                if not force and now - self._last_emit < self.interval:
                    return
                self._last_emit = now
                self._held = False
                snap = self._snapshot()
                text, self._pending_log = "".join(self._pending_log), []
            if self._sink is None:
                return
            try:
                self._sink(snap, text)
            except Exception:  # noqa: BLE001 - a display problem must never fail the render
                log.warning("could not report a step's progress", exc_info=True)


def _quote(arg: str) -> str:
    return arg if arg and not any(c in arg for c in " \t'\"\\;|&$") else "'" + arg.replace("'", "'\\''") + "'"
