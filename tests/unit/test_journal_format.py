"""The journal segment format with pinned database ids: golden vectors written before the
ids were pinned (by position in the database list) still read the same, every existing
id stays what it is, and an unknown id is refused, never applied to the wrong database."""

from __future__ import annotations

import pytest

from repfs.errors import CorruptObject
from repfs.journal.segment import ChangeSet, decode_segment, encode_segment
from repfs.meta import schema as s

# A segment of two change sets, encoded by repfs before the ids were pinned (commit d7e42ed).
GOLDEN = bytes.fromhex(
    "524a534701070000000000000008000000000000000200000000002a36fe9c97170700000000000000030000000001080000"
    "00000000000000000205000000494e4f444501010c00000000000000000000016e616d651000000076767676767676767676"
    "7676767676760700010000006b0800000000000000020000000b01080000006e6578745f696e6f0800000000000000000000"
    "030a0120000000424242424242424242424242424242424242424242424242424242424242424200000000"
)
SETS = [
    ChangeSet(
        7,
        [
            ("inodes", b"\x00" * 7 + b"\x02", b"INODE"),
            ("dirents", b"\x00" * 7 + b"\x01name", b"v" * 16),
            ("xattrs", b"k", None),
        ],
    ),
    ChangeSet(8, [("meta", b"next_ino", b"\x00" * 7 + b"\x03"), ("deficit", b"B" * 32, b"")]),
]
WRITTEN = 1_700_000_000_000_000_000


def test_an_old_segment_reads_the_same() -> None:
    seg = decode_segment(GOLDEN)
    assert seg.sets == SETS and seg.written_ns == WRITTEN
    assert encode_segment(SETS, written_ns=WRITTEN) == GOLDEN


def test_database_ids_are_pinned() -> None:
    assert {name: s.DATABASE_IDS[name] for name in list(s.DATABASE_IDS)[:12]} == {
        "inodes": 0, "dirents": 1, "dircookie": 2, "parents": 3, "symlinks": 4, "blockmap": 5,
        "blocks": 6, "xattrs": 7, "orphans": 8, "gc": 9, "deficit": 10, "meta": 11,
    }  # fmt: skip
    ids = list(s.DATABASE_IDS.values())
    assert len(set(ids)) == len(ids) and all(0 <= i < 256 for i in ids)  # one byte each, never shared


def test_an_unknown_database_id_is_refused() -> None:
    unknown = max(s.DATABASE_IDS.values()) + 1
    pos = GOLDEN.index(bytes.fromhex("00010000006b"))  # the change of "xattrs" (id 7) deleting b"k"
    bad = GOLDEN[: pos - 1] + bytes([unknown]) + GOLDEN[pos:]
    assert GOLDEN[pos - 1] == s.DATABASE_IDS["xattrs"]
    with pytest.raises(CorruptObject, match="unknown database id"):
        decode_segment(bad)
