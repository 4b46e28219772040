"""What users published from their L1s: one row per (user, L1, run), in the dev L2's SQLite.

A real L2 would register the output as an asset with its provenance; this keeps exactly what
L1 sent so tests and developers can see it (`GET /published`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS publications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL, l1 TEXT NOT NULL,
    run_id TEXT NOT NULL, output_hash TEXT NOT NULL, output_name TEXT NOT NULL DEFAULT '',
    provenance TEXT NOT NULL, published_at REAL NOT NULL, UNIQUE (username, l1, run_id)
)
"""


@dataclass(frozen=True)
class Publication:
    id: int
    username: str
    l1: str
    run_id: str
    output_hash: str
    output_name: str
    provenance: dict
    published_at: float

    def as_json(self, base_url: str) -> dict:
        return {"id": self.id, "url": f"{base_url}/published/{self.id}", "username": self.username,
                "l1": self.l1, "run_id": self.run_id, "output_hash": self.output_hash,
                "output_name": self.output_name, "published_at": self.published_at}


class Publications:
    def __init__(self, data_dir: Path) -> None:
        self.db_path = data_dir / "publications.sqlite3"
        with self._db() as db:
            db.execute(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=5)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(self, username: str, l1: str, run_id: str, *, output_hash: str, output_name: str,
            provenance: dict) -> tuple[Publication, bool]:
        """Record a publication; (record, created). Publishing the same run again changes nothing."""
        with self._db() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO publications (username, l1, run_id, output_hash, output_name, provenance,"
                " published_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (username, l1, run_id, output_hash, output_name, json.dumps(provenance), time.time()))
            created = cursor.rowcount > 0
        found = self.find(username, l1, run_id)
        assert found is not None
        return found, created

    def find(self, username: str, l1: str, run_id: str) -> Publication | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM publications WHERE username = ? AND l1 = ? AND run_id = ?",
                             (username, l1, run_id)).fetchone()
        return _row(row) if row else None

    def get(self, publication_id: int) -> Publication | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM publications WHERE id = ?", (publication_id,)).fetchone()
        return _row(row) if row else None

    def all(self, limit: int = 200) -> list[Publication]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM publications ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_row(row) for row in rows]


def _row(row: tuple) -> Publication:
    return Publication(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7])
