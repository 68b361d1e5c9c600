"""docs/FORMAT.md stays exact: its examples of object names, of a journal segment's bytes
and of a lease are what the code makes, and what the code makes decodes back."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from repfs.backend import keys
from repfs.errors import CorruptObject
from repfs.journal.segment import ChangeSet, decode_segment, encode_segment
from repfs.lease import Lease
from repfs.meta.schema import DATABASE_IDS

ROOT = Path(__file__).resolve().parents[2]
FORMAT = (ROOT / "docs" / "FORMAT.md").read_text()


def golden(name: str) -> str:
    """The fenced block after `<!-- golden: NAME -->` in docs/FORMAT.md."""
    m = re.search(rf"<!-- golden: {name} -->\n```\w*\n(.*?)```", FORMAT, re.S)
    assert m, f"docs/FORMAT.md has no golden block {name!r}"
    return m[1]


def test_object_names_are_those_the_doc_shows() -> None:
    block, journal, snapshot = golden("names").split()
    block_id = bytes.fromhex("ab" + "00" * 30 + "01")
    assert keys.block_key(block_id) == block and keys.block_id_from_key(block) == block_id
    assert keys.journal_key(1, 3) == journal and keys.parse_journal_key(journal) == (1, 3)
    assert keys.snapshot_key(20_000) == snapshot and keys.parse_snapshot_key(snapshot) == 20_000
    assert keys.SUPERBLOCK_KEY == "superblock" and keys.LEASE_KEY == "lease"
    for name in ("superblock", "blocks/<hh>/<id>", "journal/<first>-<last>", "snapshots/<seq>", "lease"):
        assert f"| `{name}` |" in FORMAT
    for bad in ("", "/superblock", "blocks/../lease", "blocks//x", f"blocks/{keys.TEMP_PREFIX}x", "a\0b"):
        with pytest.raises(ValueError):
            keys.check_key(bad)


def test_the_segment_example_is_the_bytes_the_journal_writes() -> None:
    lines = golden("segment").splitlines()
    hex_bytes = "".join(re.match(r"((?:[0-9a-f]{2} )*[0-9a-f]{2})\s{2,}", line)[1] for line in lines)  # type: ignore[index]
    doc = bytes.fromhex(hex_bytes)
    sets = [ChangeSet(7, [("meta", b"k", b"v")]), ChangeSet(8, [("dirents", b"x", None)])]
    assert encode_segment(sets, written_ns=1_700_000_000_000_000_000) == doc
    seg = decode_segment(doc)
    assert seg.sets == sets and seg.written_ns == 1_700_000_000_000_000_000
    # the head is 33 bytes, as the doc says, and the database indexes are the table's
    assert doc[33:41] == (7).to_bytes(8, "little")
    table = ", ".join(f"{i} {name}" for name, i in DATABASE_IDS.items())
    assert table in " ".join(FORMAT.split())
    for cut in (doc[:-1], doc + b"\0", doc[:4] + b"\x02" + doc[5:]):  # short, trailing, version 2
        with pytest.raises(CorruptObject):
            decode_segment(cut)


def test_the_lease_example_is_what_a_mount_writes() -> None:
    doc = golden("lease").strip()
    lease = Lease("0f" * 16, "host1", 4242, "/var/lib/repfs/fs", 1700000060.5)
    assert json.dumps(dataclasses.asdict(lease)) == doc
    assert Lease(**json.loads(doc)) == lease
    for field in dataclasses.fields(Lease):
        assert f"| `{field.name}` |" in FORMAT
