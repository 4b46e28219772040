"""Import-by-path: opening a server-side file only when it is a regular file inside an import root.

The path is resolved (symlinks and `..`) and checked against the resolved roots, then opened
without following a final symlink and without blocking on a FIFO; the open descriptor is
checked again (`fstat`, and its real path through /proc), so swapping the file between the
check and the open gains nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from l1web.errors import BadRequest, Forbidden, NotFound

#: Flags for opening an import: no final symlink, no blocking on FIFOs, not inherited.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Where Linux shows the real path of an open descriptor.
PROC_FD = Path("/proc/self/fd")


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _refuse_outside(shown: str) -> Forbidden:
    return Forbidden(f"{shown} is not inside an import root")


def open_for_import(path: str, roots: Iterable[Path]) -> tuple[int, os.stat_result, Path]:
    """An open descriptor, its stat and its real path; raises 400/403/404 naming the problem."""
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    if not real_roots:
        raise Forbidden("import by path is disabled: no import roots are configured (IMPORT_ROOTS)")
    if not path or "\x00" in path:
        raise BadRequest("import path is empty or contains a NUL byte")
    if not os.path.isabs(path):
        raise BadRequest(f"import path must be absolute: {path!r}")
    resolved = Path(os.path.realpath(path))
    if not _inside(resolved, real_roots):
        raise _refuse_outside(repr(path))
    try:
        fd = os.open(resolved, OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"no such file to import: {path!r}") from None
    except OSError as exc:
        raise Forbidden(f"cannot open {path!r} for import: {exc.strerror}") from None
    try:
        info = _check_descriptor(fd, path, real_roots)
    except BaseException:
        os.close(fd)
        raise
    return fd, info, resolved


def _check_descriptor(fd: int, shown: str, real_roots: list[Path]) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise BadRequest(f"{shown!r} is not a regular file (directories, FIFOs and devices are refused)")
    if PROC_FD.is_dir():
        opened = Path(os.readlink(PROC_FD / str(fd)))
        if not _inside(opened, real_roots):
            raise _refuse_outside(repr(shown))
    return info
