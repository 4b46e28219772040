"""The engine's domain exceptions: one module, small classes, messages that name the culprit."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises for its own reasons."""


class DagError(EngineError, ValueError):
    """A DAG that cannot be planned: names the node and, where one is at fault, the field."""

    def __init__(self, message: str, *, node: str | None = None, field: str | None = None):
        where = f"node {node!r}" if node is not None else "dag"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.node = node
        self.field = field
        self.reason = message


class MediaError(EngineError, ValueError):
    """A media file the engine refuses or cannot read (playlist, pixel bomb, no streams...)."""


class HostileMedia(MediaError):
    """Refused for safety rather than for being unreadable: a playlist or concat list that would
    make ffmpeg open other files, a pixel bomb, a stream longer than the engine renders."""


class StepError(EngineError):
    """A step failed to render; the message says which step and why."""
