"""The metadata store's transactions (repfs/meta/store.py) on a real LMDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from repfs.meta.store import MetaStore, Txn


def test_ended_read_transactions_give_their_reader_slots_back(tmp_path: Path) -> None:
    """A caller may keep its name for a read transaction after the block (a fetch does,
    across its awaits): ended ones must not hold LMDB's reader slots, or many at once
    fill the table (MDB_READERS_FULL)."""
    meta = MetaStore(tmp_path / "meta")
    try:
        kept: list[Txn] = []
        for _ in range(2000):  # far more than the reader table holds
            with meta.read() as t:
                assert t.get("meta", b"no such key") is None
            kept.append(t)
        with pytest.raises(AttributeError):
            kept[0].get("meta", b"no such key")  # an ended transaction is not used again
    finally:
        meta.close()
