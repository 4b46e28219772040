"""Frames streamed through numpy between two ffmpeg processes, one frame in memory at a time.

A decoder writes raw frames to a pipe, a Python function transforms each, an
encoder reads them from its stdin. Both processes get their own process group; a watchdog kills
both at the deadline, and leaving the pipeline for any reason kills whatever still runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, cast

import numpy as np

from l1web import trace
from l1web.engine import watch
from l1web.engine.effects.errors import EffectError
from l1web.engine.ffmpeg import STDERR_KEEP, FFmpegError, FFmpegTimeout, child_options, kill_group

#: Threads transforming frames: scipy.ndimage and numpy release the GIL, so frames are
#: processed in parallel while the two ffmpeg processes use their own cores. Counted from the
#: CPUs this process may run on, so a worker pinned to one CPU does not oversubscribe it.
FRAME_WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
#: Frames decoded but not yet written; memory stays below twice this many frames (in + out).
IN_FLIGHT = 2 * FRAME_WORKERS
#: Seconds a process still gets to exit after the deadline when it was about to finish.
FINISH_GRACE = 1.0


def apply_frames(
    frame_fn: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, ...],
    decoder: list[str],
    encoder: list[str],
    *,
    timeout: float,
) -> None:
    """Decode → `frame_fn` per frame of `shape` (uint8) → encode; FFmpegError on failure.

    Frames are transformed by a few threads (numpy and scipy.ndimage release the GIL) and
    written in order; at most `IN_FLIGHT` frames are held at once.
    """
    frame_bytes = int(np.prod(shape))
    step = watch.current()  # the step being rendered, told how many frames are done
    if step is not None:
        step.command([Path(decoder[0]).name, *decoder[1:]])
        step.command([Path(encoder[0]).name, *encoder[1:]])
    written = 0

    def transform(buffer: bytearray) -> np.ndarray:
        out = frame_fn(np.frombuffer(buffer, np.uint8).reshape(shape))
        if out.shape != shape or out.dtype != np.uint8:
            raise EffectError(f"frame function returned {out.shape} {out.dtype}")
        return np.ascontiguousarray(out)

    with (
        running(decoder, encoder, timeout) as pipeline,
        ThreadPoolExecutor(FRAME_WORKERS, thread_name_prefix="frames") as pool,
    ):
        pending: deque[Future[np.ndarray]] = deque()
        trace.mark("render.spawned")
        try:
            while (buffer := pipeline.read_frame(frame_bytes)) is not None:
                if not written and not pending:
                    trace.mark("render.first_frame")  # a chunk's seek and decoder start-up end here
                pending.append(pool.submit(transform, buffer))
                if len(pending) >= IN_FLIGHT:
                    frame = pending.popleft().result()
                    pipeline.write_frame(frame)
                    written += 1
                    if step is not None:
                        step.frames_done(written, frame)
            while pending:
                frame = pending.popleft().result()
                pipeline.write_frame(frame)
                written += 1
                if step is not None:
                    step.frames_done(written, frame)
        finally:
            for future in pending:
                future.cancel()
        trace.mark("render.last_frame")
        pipeline.finish()  # the encoder's flush: its look-ahead frames encoded, the MP4 index written


@contextlib.contextmanager
def running(decoder: list[str], encoder: list[str], timeout: float) -> Iterator[Pipeline]:
    """Both processes started; on leaving, killed if still running and reaped."""
    with tempfile.TemporaryFile() as decoder_log, tempfile.TemporaryFile() as encoder_log:
        pipeline = Pipeline(timeout, (decoder_log, encoder_log))
        try:
            pipeline.procs.append(_spawn(decoder, decoder_log, stdout=subprocess.PIPE))
            pipeline.procs.append(_spawn(encoder, encoder_log, stdin=subprocess.PIPE))
            pipeline.watchdog.start()
            yield pipeline
        finally:
            pipeline.stop()


class Pipeline:
    """A decoder and an encoder process, with a watchdog that kills both at the deadline."""

    def __init__(self, timeout: float, logs: tuple[IO[bytes], IO[bytes]]) -> None:
        self.timeout = timeout
        self.logs = logs
        self.deadline = time.monotonic() + timeout
        self.timed_out = threading.Event()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.watchdog = threading.Timer(timeout, self._expire)
        self.watchdog.daemon = True

    @property
    def decoder(self) -> subprocess.Popen[bytes]:
        return self.procs[0]

    @property
    def encoder(self) -> subprocess.Popen[bytes]:
        return self.procs[1]

    def read_frame(self, size: int) -> bytearray | None:
        """The next frame of `size` bytes; None at the end of the stream."""
        assert self.decoder.stdout is not None
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            n = cast(io.BufferedReader, self.decoder.stdout).readinto(view[got:])  # typeshed: IO[bytes]
            if not n:
                break
            got += n
        if got == size:
            return buffer
        self._wait(0)
        if got:
            raise FFmpegError(f"ffmpeg decoder stopped in the middle of a frame ({got} bytes)")
        return None

    def write_frame(self, frame: np.ndarray) -> None:
        assert self.encoder.stdin is not None
        try:
            self.encoder.stdin.write(frame.data)
        except BrokenPipeError:
            self._wait(1)
            raise FFmpegError("ffmpeg encoder closed its input early") from None

    def finish(self) -> None:
        """Close the encoder's input and wait for both processes to succeed."""
        assert self.encoder.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.encoder.stdin.close()
        self._wait(0)
        self._wait(1)

    def _wait(self, index: int) -> None:
        proc, role = self.procs[index], ("decoder", "encoder")[index]
        try:
            code = proc.wait(max(self.deadline - time.monotonic(), FINISH_GRACE))
        except subprocess.TimeoutExpired:
            self._expire()
            code = proc.wait()
        if self.timed_out.is_set():
            raise FFmpegTimeout(f"ffmpeg {role} timed out after {self.timeout:g} s")
        if code:
            self.logs[index].seek(0)
            tail = self.logs[index].read().decode("utf-8", "replace")[-STDERR_KEEP:].strip()
            raise FFmpegError(f"ffmpeg {role} failed (exit {code}): {tail}")

    def _expire(self) -> None:
        self.timed_out.set()
        for proc in self.procs:
            kill_group(proc)

    def stop(self) -> None:
        self.watchdog.cancel()
        for proc in self.procs:
            if proc.poll() is None:
                kill_group(proc)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            proc.wait()


def _spawn(args: list[str], log: IO[bytes], **pipes: int) -> subprocess.Popen[bytes]:
    # stderr goes to a file, not a pipe: nobody reads it while frames flow, and a full stderr
    # pipe would block ffmpeg and deadlock the whole pipeline.
    return subprocess.Popen(
        args,
        stdin=pipes.get("stdin", subprocess.DEVNULL),
        stdout=pipes.get("stdout", subprocess.DEVNULL),
        stderr=log,
        **child_options(),
    )
