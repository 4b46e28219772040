"""Running ffmpeg and ffprobe: argument lists only, local files only, bounded in time.

Every invocation goes through `run` so that the safety rules live in one place: no shell,
`-protocol_whitelist file` on every input (a playlist or concat list cannot make ffmpeg open a
URL or a device), a timeout that kills the whole process group, and stderr kept for the error.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from l1web.engine import avprobe, watch

if TYPE_CHECKING:
    from l1web.settings import Settings

#: Seconds an ffprobe call may take before it is killed.
PROBE_TIMEOUT = 30.0
#: Seconds an ffmpeg render may take by default before it is killed.
RENDER_TIMEOUT = 600.0
#: Protocols ffmpeg may open: only regular local files (and pipes for our own streaming).
PROTOCOLS = "file,pipe"
#: Flags placed before every `-i`: local files only, no concat/playlist side doors.
INPUT_FLAGS = ("-protocol_whitelist", PROTOCOLS)
#: Demuxers the engine lets ffmpeg use on media: no playlists (hls, dash), no concat lists, no
#: text "tty" art, no devices — formats that would make ffmpeg open other files are refused.
SAFE_DEMUXERS = ",".join((
    "mov", "mp4", "m4a", "matroska", "webm", "avi", "mpegts", "flv", "ogg", "mp3", "wav",
    "aiff", "flac", "aac", "image2", "png_pipe", "jpeg_pipe", "webp_pipe", "gif", "bmp_pipe",
    "tiff_pipe",
))
#: `INPUT_FLAGS` plus the demuxer allow-list: what the engine puts before every media `-i`.
MEDIA_INPUT_FLAGS = (*INPUT_FLAGS, "-format_whitelist", SAFE_DEMUXERS)
#: Flags placed first on every ffmpeg command line.
BASE_FLAGS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
#: Bytes of stderr kept for an error message.
STDERR_KEEP = 4000


#: prctl option: the signal the kernel sends a child when the thread that started it dies.
PR_SET_PDEATHSIG = 1


class FFmpegError(RuntimeError):
    """ffmpeg or ffprobe failed, timed out, or is missing."""


class FFmpegTimeout(FFmpegError):
    """ffmpeg outlived its timeout and was killed (a busy or stuck machine: worth another try)."""


#: Where the ffmpeg binary came from, as provenance records it.
SOURCE_SETTING, SOURCE_SYSTEM, SOURCE_WHEEL = "FFMPEG setting", "system", "imageio-ffmpeg"
#: The one line a machine without any ffmpeg gets, naming both ways to get one.
MISSING_FFMPEG = "ffmpeg not found: install the ffmpeg package (apt-get install ffmpeg) or pip install imageio-ffmpeg"
#: The one line a machine with neither ffprobe nor PyAV gets.
MISSING_PROBE = "ffprobe not found and PyAV is not installed: apt-get install ffmpeg, or pip install av"
#: How errors and provenance name probing through PyAV.
PYAV_PROBE = "ffprobe (PyAV)"
#: The PyAV prober run as a script (not `-m l1web…`, which would import the web app's packages).
AVPROBE = Path(__file__).with_name("avprobe.py")


#: Paths from the settings (`FFMPEG`, `FFPROBE`; see `configure`); empty means "look for one".
_configured = {"ffmpeg": "", "ffprobe": ""}


def configure(settings: Settings) -> None:
    """Use the settings' `FFMPEG` / `FFPROBE` paths (empty: the system's, then the fallbacks).

    Called by each entry point (web app, worker, launcher) before any ffmpeg runs; RQ's forked
    work horses inherit it.
    """
    wanted = {"ffmpeg": settings.ffmpeg, "ffprobe": settings.ffprobe}
    if wanted != _configured:
        _configured.update(wanted)
        ffmpeg_source.cache_clear()
        ffprobe_exe.cache_clear()


def _executable(setting: str, path: str) -> str:
    """A configured path, resolved; a missing or non-executable one is one clear error."""
    found = shutil.which(path)
    if not found:
        raise FFmpegError(f"{setting}={path} is not an executable file: fix or unset {setting}")
    return found


@functools.cache
def ffmpeg_source() -> tuple[str, str]:
    """(path, where it came from): the `FFMPEG` setting, the system's, or imageio-ffmpeg's."""
    if _configured["ffmpeg"]:
        return _executable("FFMPEG", _configured["ffmpeg"]), SOURCE_SETTING
    system = shutil.which("ffmpeg")
    if system:
        return system, SOURCE_SYSTEM
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe()), SOURCE_WHEEL
    except (ImportError, RuntimeError) as exc:
        raise FFmpegError(MISSING_FFMPEG) from exc


def ffmpeg_exe() -> str:
    """The ffmpeg binary (see `ffmpeg_source`)."""
    return ffmpeg_source()[0]


@functools.cache
def ffprobe_exe() -> str | None:
    """The ffprobe binary: the `FFPROBE` setting, or the system one; None means probe with PyAV."""
    if _configured["ffprobe"]:
        return _executable("FFPROBE", _configured["ffprobe"])
    return shutil.which("ffprobe")


def prober() -> str:
    """What probes media here: "ffprobe", or "ffprobe (PyAV)" when there is no ffprobe binary.

    Raises FFmpegError with one line when there is neither.
    """
    if ffprobe_exe():
        return "ffprobe"
    try:
        import av  # noqa: F401 - only whether it is installed
    except ImportError as exc:
        raise FFmpegError(MISSING_PROBE) from exc
    return PYAV_PROBE


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: be SIGKILLed if our starter dies (e.g. a SIGKILLed RQ horse).

    The child has a session of its own (so a timeout can kill its group), which also takes it
    out of the process group that RQ kills; without this it would render on as an orphan.
    """
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def child_options() -> dict[str, Any]:
    """Popen options for every ffmpeg child: its own process group, killed if we die."""
    options: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        _libc()  # loaded before fork, so the child only makes the call
        options["preexec_fn"] = _die_with_parent
    return options


def run(args: list[str], *, timeout: float = RENDER_TIMEOUT, stdin: bytes | None = None,
        name: str | None = None) -> bytes:
    """Run a command given as an argument list; return stdout or raise FFmpegError.

    The child gets its own process group so a timeout kills ffmpeg and anything it started.
    Errors name the tool as `name` (default: the program's file name).
    """
    name = name or Path(args[0]).name
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **child_options(),
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise FFmpegTimeout(f"{name} timed out after {timeout:g} s") from None
    except BaseException:
        kill_group(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace")[-STDERR_KEEP:].strip()
        raise FFmpegError(f"{name} failed (exit {proc.returncode}): {tail}")
    return cast(bytes, out)  # communicate() is typed Any; without text=True it is bytes


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child started with `start_new_session=True` and its whole process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def ffmpeg(*args: str, timeout: float = RENDER_TIMEOUT) -> bytes:
    """Run ffmpeg with the base flags; callers put `*INPUT_FLAGS` before each `-i`.

    Inside a watched step (`engine.watch.watching`) ffmpeg also reports its progress and its
    log to the step's watch (`run_watched`).
    """
    step = watch.current()
    if step is not None:
        return run_watched(list(args), step, timeout=timeout)
    return run([ffmpeg_exe(), *BASE_FLAGS, *args], timeout=timeout)


#: Seconds between two `-progress` blocks of a watched ffmpeg.
STATS_PERIOD = "0.5"
#: ffmpeg's log levels that make an error message (`-loglevel level+info` tags every line).
ERROR_TAGS = ("[error] ", "[fatal] ", "[panic] ")


def run_watched(args: list[str], step: watch.StepWatch, *, timeout: float = RENDER_TIMEOUT) -> bytes:
    """ffmpeg with `-progress` on a pipe of its own and its stderr at info level, both read
    by threads as it runs and handed to `step`; same rules and errors as `run`.

    When the step keeps a "last rendered" frame (`StepWatch.wants_preview`) and the command is a
    video render `with_preview` understands, ffmpeg also writes a small JPEG of the frame it
    just rendered, which `step` publishes every few seconds. The preview must never fail the
    render: should that command fail, it runs again, as it was given, in the time left.
    """
    peek = preview_file(args) if step.wants_preview else None
    peeking = with_preview(args, peek) if peek is not None else None
    if peek is None or peeking is None:
        return _run_watched(args, step, timeout=timeout)
    started = time.monotonic()
    try:
        peek.parent.mkdir()
        return _run_watched(peeking, step, timeout=timeout, peek=peek)
    except FFmpegTimeout:
        raise
    except (FFmpegError, OSError) as exc:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise
        step.line(f"(l1) ffmpeg failed with its preview output ({str(exc)[:200]}); again without it")
    finally:
        shutil.rmtree(peek.parent, ignore_errors=True)
    return _run_watched(args, step, timeout=left)


#: Frames per second of media time a watched video render writes to its "last rendered" JPEG
#: (the watch publishes the newest one at most every `watch.PREVIEW_INTERVAL` s of wall time).
PREVIEW_RATE = 2
#: What ffmpeg makes of the rendered frame for the preview: longest side at most
#: `watch.PREVIEW_SIZE`, never enlarged; full-range 4:2:0, what JPEG expects (so `-strict -1`
#: for mjpeg's "non-J" pixel format, and no "deprecated pixel format" warning in the log).
PREVIEW_CHAIN = (f"fps={PREVIEW_RATE},scale='min({watch.PREVIEW_SIZE},iw)':'min({watch.PREVIEW_SIZE},ih)'"
                 ":force_original_aspect_ratio=decrease:out_range=full,format=yuv420p")
PREVIEW_OUTPUT = ("-strict", "-1", "-q:v", "5", "-f", "image2", "-update", "1")
#: Output files that are video renders (images and sounds get no "last rendered" frame).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm"})
#: Output options that end the output before its input ends: the preview's branch would keep
#: ffmpeg decoding to the input's end, so such commands get no preview.
OUTPUT_LIMITS = frozenset({"-t", "-to", "-fs", "-frames", "-frames:v", "-vframes", "-shortest"})
#: Filter-graph labels of the rendered picture split in two, and of the preview's branch.
_MAIN, _PEEK, _SMALL = "[l1main]", "[l1peek]", "[l1preview]"


def preview_file(args: list[str]) -> Path | None:
    """Where a watched render of `args` writes its preview: a fresh directory beside the
    output (the step's work directory, removed with it), or None when the output is no video."""
    if not args or args[-1].startswith("-") or Path(args[-1]).suffix.lower() not in VIDEO_SUFFIXES:
        return None
    out = Path(args[-1])
    return out.parent / f".peek-{os.getpid()}-{time.monotonic_ns()}" / "last.jpg"


def with_preview(args: list[str], jpeg: Path) -> list[str] | None:
    """`args` with a second output: the rendered picture, `PREVIEW_RATE` frames per media
    second, made small and overwritten in `jpeg` (`-update 1`); None when the command is not
    one of the engine's two shapes of video render, which both keep their exact output bytes:

    - `-filter_complex GRAPH … -map [v] … out`: `[v]` is split, one half mapped as before;
    - `-map N:v:0 … -vf CHAIN … out`: becomes `-filter_complex [N:v:0]CHAIN,split…` (the same
      filters on the same frames).

    ffmpeg 5 cannot decode an output again (7's `-dec`), and reading the partial MP4 is not
    possible (its index is written last), hence the split inside the graph.
    """
    if "-i" not in args or args[-1].startswith("-"):
        return None
    last_input = len(args) - 1 - args[::-1].index("-i")
    output_options = args[last_input + 2:-1]
    if OUTPUT_LIMITS.intersection(output_options) or "-filter:v" in args:
        return None
    maps = [i for i, a in enumerate(args[:-1]) if a == "-map"]
    branch = f",split=2{_MAIN}{_PEEK};{_PEEK}{PREVIEW_CHAIN}{_SMALL}"
    out = list(args)
    if args.count("-filter_complex") == 1 and "-vf" not in args:
        video = [i for i in maps if args[i + 1] == "[v]"]
        if len(video) != 1:
            return None
        graph = args.index("-filter_complex") + 1
        out[graph] = f"{args[graph]};[v]{branch.removeprefix(',')}"
        out[video[0] + 1] = _MAIN
    elif args.count("-vf") == 1 and "-filter_complex" not in args:
        video = [i for i in maps if re.fullmatch(r"\d+:v:0", args[i + 1])]
        if len(video) != 1:
            return None
        chain = args.index("-vf")
        out[chain:chain + 2] = ["-filter_complex", f"[{args[video[0] + 1]}]{args[chain + 1]}{branch}"]
        out[video[0] + 1] = _MAIN
    else:
        return None
    return [*out, "-map", _SMALL, *PREVIEW_OUTPUT, str(jpeg)]


def _run_watched(args: list[str], step: watch.StepWatch, *, timeout: float, peek: Path | None = None) -> bytes:
    read_fd, write_fd = os.pipe()
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-y", "-nostats",
            "-stats_period", STATS_PERIOD, "-progress", f"pipe:{write_fd}", *args]
    step.command([Path(argv[0]).name, *args])
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(write_fd,), **child_options())
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    streams = _Streams(proc, read_fd, step, peek)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()
        raise FFmpegTimeout(f"ffmpeg timed out after {timeout:g} s") from None
    except BaseException:
        kill_group(proc)
        raise
    finally:
        streams.join()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if proc.returncode != 0:
        text = "\n".join(streams.errors or streams.tail)
        for tag in ERROR_TAGS:
            text = text.replace(tag, "")
        raise FFmpegError(f"ffmpeg failed (exit {proc.returncode}): {text[-STDERR_KEEP:].strip()}")
    return bytes(streams.out)


class _Streams:
    """Threads reading a watched ffmpeg's stdout (kept), stderr (to the log; error lines kept)
    and progress pipe (to the watch), so none of the three can fill up and stall ffmpeg."""

    def __init__(self, proc: subprocess.Popen[bytes], progress_fd: int, step: watch.StepWatch,
                 peek: Path | None = None) -> None:
        self.proc, self.progress_fd, self.step, self.peek = proc, progress_fd, step, peek
        self.errors: list[str] = []
        self.tail: list[str] = []
        self.out = bytearray()
        self.threads = [threading.Thread(target=fn, daemon=True)
                        for fn in (self._stderr, self._progress, self._stdout)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("[info] ffmpeg stats and -progress period"):
                continue
            line = line.removeprefix("[info] ")
            self.step.line(line)
            self.tail.append(line)
            del self.tail[:-40]
            if any(tag in line for tag in ERROR_TAGS):
                self.errors.append(line)

    def _progress(self) -> None:
        block: dict[str, str] = {}
        with os.fdopen(self.progress_fd, "rb") as stream:
            for raw in stream:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                block[key] = value
                if key == "progress":
                    self.step.ffmpeg_progress(block)
                    block = {}
                    if self.peek is not None:
                        self.step.preview_file(self.peek)

    def _stdout(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(65536):
            self.out.extend(chunk)


def probe_own(path: Path, *, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """`probe(path, safe=True)` of a file this engine's own ffmpeg wrote (a chunk), read in this
    process through PyAV where it is installed, in ffprobe's shape (l1web.engine.avprobe).

    Written by hand instead of running ffprobe because of what it costs: on a 10 s 720p chunk
    5-18 ms in process against 55 ms of ffprobe's start-up (the probe of each chunk when it is
    stored and again when it is joined). Other files keep the child process: a hostile file may
    crash or hang a demuxer, which these bytes, just made here, do not.
    """
    try:
        import av  # noqa: F401 - only whether it is installed
    except ImportError:
        return probe(path, timeout=timeout, safe=True)
    try:
        return avprobe.probe(str(path), SAFE_DEMUXERS, PROTOCOLS)
    except Exception as exc:  # noqa: BLE001 - PyAV raises its own error types; reported like ffprobe's
        raise FFmpegError(f"{PYAV_PROBE} failed on {Path(path).name}: {exc}") from None


def probe(path: Path, *, timeout: float = PROBE_TIMEOUT, safe: bool = False) -> dict[str, Any]:
    """ffprobe's JSON (format and streams) for a local file; `safe` adds the demuxer allow-list.

    Without an ffprobe binary (a pip-only install), PyAV prints the same fields in the same
    shape, in a child process bounded by the same timeout (l1web.engine.avprobe).
    """
    exe = ffprobe_exe()
    if exe is None:
        formats = ["--formats", SAFE_DEMUXERS] if safe else []
        args, name = [sys.executable, str(AVPROBE), "--protocols", PROTOCOLS, *formats, str(path)], PYAV_PROBE
    else:
        flags = MEDIA_INPUT_FLAGS if safe else INPUT_FLAGS
        args, name = [exe, "-v", "error", *flags, "-show_format", "-show_streams", "-of", "json", str(path)], None
    return cast(dict[str, Any], json.loads(run(args, timeout=timeout, name=name) or b"{}"))  # ffprobe's JSON object
