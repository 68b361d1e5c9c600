"""Resumable uploads: their records, and where their bytes wait until complete.

An upload's bytes go straight to a staging file on the mount, written as the account:
beside its target (`.repfs-upload-ID` in the target's folder), so that completing it is
one rename in the same folder, and its quota is charged where the file will live; or, for
a part of a concatenated upload (which names no target), in the account's own staging
folder `/NAME/.repfs-uploads/`. The staging file is given the upload's whole length at
creation, so a quota that cannot take it refuses the upload at once (EDQUOT: 507).

The record (in the web process's SQLite file) keeps the offset up to which the staging
file is fsync'd: what HEAD reports is never past what is durable, on the pools' write
quorum, so an upload goes on after a dropped connection, a restart of `repfs web` and a
restart of the mount daemon. Bytes past that offset are written again by the next PATCH.

Two accounts uploading to the same path: the second is refused (423) while the first is
open. Programs on the mount are not held off by a pending upload; at completion a file
another account has open for writing refuses the rename (EBUSY: 423), as on the mount.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from repfs.web.statedb import state_db

DEFAULT_EXPIRY = 24 * 3600.0  # seconds after the last byte an unfinished upload is kept
STAGING_PREFIX = ".repfs-upload-"
PARTS_FOLDER = ".repfs-uploads"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    target TEXT,
    staging TEXT NOT NULL,
    length INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    concat TEXT NOT NULL,
    parts TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    done INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_target ON uploads(target);
"""


@dataclass
class Upload:
    id: str
    account: str
    target: str | None  # where it goes when complete (None: a part of a concatenation)
    staging: str  # its bytes meanwhile (a path on the mount)
    length: int
    offset: int  # durable bytes
    metadata: dict[str, str]
    concat: str = ""  # "", "partial" or "final"
    parts: list[str] = field(default_factory=list)  # of a final upload: the partial ids
    created: float = 0.0
    expires: float = 0.0
    done: bool = False

    @property
    def complete(self) -> bool:
        return self.offset >= self.length


class Uploads:
    def __init__(self, path: Path, *, expiry: float = DEFAULT_EXPIRY) -> None:
        self.db = state_db(path, _SCHEMA)
        self.expiry = expiry

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(16)

    def add(self, upload: Upload) -> Upload:
        now = time.time()
        upload.created, upload.expires = now, now + self.expiry
        self.db.execute(
            "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (upload.id, upload.account, upload.target, upload.staging, upload.length, upload.offset,
             json.dumps(upload.metadata), upload.concat, json.dumps(upload.parts), upload.created, upload.expires,
             int(upload.done)),
        )  # fmt: skip
        return upload

    def get(self, upload_id: str) -> Upload | None:
        row = self.db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return _upload(row) if row is not None else None

    def advanced(self, upload: Upload, offset: int) -> None:
        """`offset` bytes are durable; the upload is kept `expiry` longer."""
        upload.offset, upload.expires = offset, time.time() + self.expiry
        self.db.execute("UPDATE uploads SET offset = ?, expires = ? WHERE id = ?", (offset, upload.expires, upload.id))

    def finished(self, upload: Upload) -> None:
        upload.done = True
        self.db.execute("UPDATE uploads SET done = 1 WHERE id = ?", (upload.id,))

    def remove(self, upload_id: str) -> None:
        self.db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def pending_to(self, target: str) -> list[Upload]:
        rows = self.db.execute("SELECT * FROM uploads WHERE target = ? AND done = 0", (target,)).fetchall()
        return [u for u in map(_upload, rows) if u.expires > time.time()]

    def expired(self) -> list[Upload]:
        rows = self.db.execute("SELECT * FROM uploads WHERE expires < ?", (time.time(),)).fetchall()
        return [_upload(r) for r in rows]


def _upload(row: tuple[object, ...]) -> Upload:
    uid, account, target, staging, length, offset, metadata, concat, parts, created, expires, done = row
    return Upload(str(uid), str(account), None if target is None else str(target), str(staging), int(str(length)),
                  int(str(offset)), json.loads(str(metadata)), str(concat), json.loads(str(parts)), float(str(created)),
                  float(str(expires)), bool(done))  # fmt: skip
