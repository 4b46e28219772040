"""Where L1's own files are: the project root (app.py, worker.py, render.py, docs/)."""

from __future__ import annotations

from pathlib import Path

#: The project's root (where app.py, worker.py and render.py live).
ROOT = Path(__file__).resolve().parent.parent
