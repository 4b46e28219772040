"""Timestamps along one job's path, for measuring where a small job's time goes (issue 19).

Off unless `L1_TRACE` names a file: then `mark(label)` appends one line per call,
``<unix time> <pid> <redis round trips so far in this process> <label>``, to that file (opened
with O_APPEND, so the lines of the web app, the workers and their horses interleave whole).
`bench/trace_small_job.py` starts the stack with it and turns the lines into a per-part table.
Disabled, `mark` is the builtin `id`: a call into C that ignores its label, with no Python frame
and no `l1web` code entered, so the marks stay in the code and cost a run neither time nor a hop
(`devtools/trace_run_path.py` counted one hop into this module from each of five callers when a
call still ran `if not _PATH: return` here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

_PATH = os.environ.get("L1_TRACE") or ""
_round_trips = 0


def enabled() -> bool:
    return bool(_PATH)


def _write(label: str) -> None:
    line = f"{time.time():.6f} {os.getpid()} {_round_trips} {label}\n".encode()
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _count_round_trips() -> None:
    """Counts every command (or pipeline) redis-py sends from this process: a round trip each."""
    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):  # noqa: ANN001 - redis-py's own signature
        global _round_trips
        _round_trips += 1
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


#: `mark(label)`: one line for `label` when tracing, nothing otherwise (see the module's docstring).
mark: Callable[[str], object] = _write if _PATH else id

if _PATH:
    _count_round_trips()
