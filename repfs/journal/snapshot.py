"""Snapshots of the whole metadata: a compacted copy of the LMDB environment, as bytes.

A snapshot is taken inside one read transaction, so it holds exactly the change sets up
to the `META_JOURNAL_SEQ` it contains; recovery applies the journal after that number.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from repfs.meta import schema as s
from repfs.meta.store import MetaStore


def take(meta: MetaStore) -> tuple[int, bytes]:
    """(sequence number, the LMDB file of a compacted copy). Blocking: run in a thread."""
    with tempfile.TemporaryDirectory(prefix="repfs-snapshot-", dir=meta.path.parent) as tmp:
        with meta.env.begin() as txn:
            raw = txn.get(s.META_JOURNAL_SEQ, db=meta.dbs["meta"])
            seq = s.from_u64(raw) if raw else 0
            meta.env.copy(tmp, compact=True, txn=txn)
        return seq, (Path(tmp) / "data.mdb").read_bytes()


def install(data: bytes, meta_dir: Path) -> None:
    """Make `data` (a snapshot's LMDB file) the metadata in `meta_dir`, replacing any there.

    Entries that describe a host's copy (`schema.LOCAL_META`) are dropped: they belonged
    to the host that took the snapshot."""
    staging = meta_dir.with_name(meta_dir.name + ".recovering")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700, parents=True)
    (staging / "data.mdb").write_bytes(data)
    meta = MetaStore(staging)
    try:
        with meta.env.begin(write=True) as txn:
            for key in s.LOCAL_META - {s.META_JOURNAL_SEQ}:
                txn.delete(key, db=meta.dbs["meta"])
    finally:
        meta.close()
    shutil.rmtree(meta_dir, ignore_errors=True)
    staging.rename(meta_dir)
