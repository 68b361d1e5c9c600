"""Block records (repfs.meta.records.BlockRecord), pinned: version 2 (a block that is its
own object) is written byte for byte as before packs; version 3 adds the pack it lies in."""

from __future__ import annotations

import pytest

from repfs.errors import CorruptObject
from repfs.meta.records import BlockRecord

DIGEST = bytes(range(32))
# version 2, as repfs wrote it before packs: 65,536 bytes, stored in 65,572, 2 references, on p1 and p2
V2 = bytes.fromhex("020000010024000100020000000000000002" + "20" + DIGEST.hex() + "027031" + "027032")
V3 = V2.replace(b"\x02", b"\x03", 1) + bytes.fromhex(
    "29" + b"journal/0000000000000007-0000000000000008".hex() + "cb00000000000000"
)


def test_a_standalone_block_record_is_version_2_as_before() -> None:
    rec = BlockRecord(65_536, 65_572, 2, ("p1", "p2"), DIGEST)
    assert rec.pack() == V2
    assert BlockRecord.unpack(V2) == rec and BlockRecord.unpack(V2).in_pack == ""


def test_a_packed_block_record_is_version_3() -> None:
    rec = BlockRecord(65_536, 65_572, 2, ("p1", "p2"), DIGEST, "journal/0000000000000007-0000000000000008", 203)
    assert rec.pack() == V3
    assert BlockRecord.unpack(V3) == rec


@pytest.mark.parametrize("raw", [V3[:-3], V3[:-50], b"\x04" + V2[1:], V3.replace(b"\x29", b"\x00", 1)[:-41]])
def test_damaged_records_are_refused(raw: bytes) -> None:
    with pytest.raises(CorruptObject):
        BlockRecord.unpack(raw)
