"""The web process's own state (sessions, uploads): SQLite files in its state folder,
readable by root only. Each call is short; callers run them in a worker thread, one at a
time per file."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def state_db(path: Path, schema: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.executescript(schema)
    path.chmod(0o600)
    return db
