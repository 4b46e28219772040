"""Timestamps along one job's path, for measuring where a small job's time goes (issue 19).

Off unless `L1_TRACE` names a file: then `mark(label)` appends one line per call,
``<unix time> <pid> <redis round trips so far in this process> <label>``, to that file (opened
with O_APPEND, so the lines of the web app, the workers and their horses interleave whole).
`bench/trace_small_job.py` starts the stack with it and turns the lines into a per-part table.
Disabled, `mark` is one global lookup and a return: the marks stay in the code.
"""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("L1_TRACE") or ""
_round_trips = 0


def enabled() -> bool:
    return bool(_PATH)


def mark(label: str) -> None:
    if not _PATH:
        return
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


if _PATH:
    _count_round_trips()
