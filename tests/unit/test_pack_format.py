"""Pack objects (repfs.journal.pack): a journal segment carrying block frames, each frame a
block object read by its range. The golden pack in tests/data/pack_golden.json was made
once by repfs; if it stops decoding, the format changed (see docs/FORMAT.md, "Changing the
format"): never regenerate it to make a test pass."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from repfs.backend.memory import MemoryPool
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.errors import CorruptObject
from repfs.journal.pack import HEAD_SIZE, decode_pack, encode_pack, is_pack
from repfs.journal.segment import ChangeSet, FrameAt, decode_segment, encode_segment

DATA = Path(__file__).parents[1] / "data"
GOLDEN: dict[str, Any] = json.loads((DATA / "pack_golden.json").read_text())
DATA_KEY = bytes.fromhex(json.loads((DATA / "codec_golden.json").read_text())["data_key_hex"])
CODEC = BlockCodec(derive_keys(DATA_KEY))
SETS = [ChangeSet(7, [("meta", b"k", b"v")]), ChangeSet(8, [("dirents", b"x", None)])]
WRITTEN = 1_700_000_000_000_000_000
KEY = "journal/0000000000000007-0000000000000008"


def blocks(*plaintexts: bytes) -> list[tuple[bytes, bytes]]:
    return [(CODEC.block_id(p), CODEC.encode(CODEC.block_id(p), p)) for p in plaintexts]


def test_the_golden_pack_decodes_and_each_frame_is_a_block_object() -> None:
    obj = bytes.fromhex(GOLDEN["object_hex"])
    assert is_pack(obj) and obj[:4] == b"RPAK" and obj[4] == 1
    pack = decode_pack(GOLDEN["key"], obj, CODEC)
    assert pack.segment.sets == SETS and pack.segment.written_ns == WRITTEN
    want = [FrameAt(bytes.fromhex(f["block_id"]), f["offset"], f["length"]) for f in GOLDEN["frames"]]
    assert pack.segment.frames == want and pack.frames_start == want[0].offset
    for f, g in zip(want, GOLDEN["frames"], strict=True):
        assert CODEC.decode(f.block_id, obj[f.offset : f.offset + f.length]) == bytes.fromhex(g["plaintext_hex"])


def test_frames_are_read_back_by_their_range_from_a_pool() -> None:
    plain = [os.urandom(65_536), b"text " * 20_000, os.urandom(10)]
    obj, at = encode_pack(KEY, SETS, blocks(*plain), CODEC, written_ns=WRITTEN)
    pool = MemoryPool("p1")

    async def main() -> None:
        await pool.put(KEY, obj)
        for f, p in zip(at, plain, strict=True):
            assert CODEC.decode(f.block_id, await pool.get_range(KEY, f.offset, f.length)) == p

    trio.run(main)
    assert decode_pack(KEY, obj, CODEC).segment.frames == at
    assert at[0].offset == HEAD_SIZE + int.from_bytes(obj[8:12], "big")


def test_the_index_is_bound_to_the_packs_key_and_every_byte_counts() -> None:
    obj, at = encode_pack(KEY, SETS, blocks(b"a" * 1000, b"b" * 2000), CODEC)
    with pytest.raises(CorruptObject):  # another segment's name: the index does not authenticate
        decode_pack("journal/0000000000000007-0000000000000009", obj, CODEC)
    for cut in (obj[:-1], obj + b"\0", obj[:10], b"RPAK\x02" + obj[5:]):
        with pytest.raises(CorruptObject):
            decode_pack(KEY, cut, CODEC)
    index_byte = bytearray(obj)
    index_byte[HEAD_SIZE + 20] ^= 1
    with pytest.raises(CorruptObject):
        decode_pack(KEY, bytes(index_byte), CODEC)
    frame_byte = bytearray(obj)  # the index still reads; the frame itself fails when decoded
    frame_byte[at[1].offset + at[1].length // 2] ^= 1
    pack = decode_pack(KEY, bytes(frame_byte), CODEC)
    f = pack.segment.frames[1]
    with pytest.raises(CorruptObject):
        CODEC.decode(f.block_id, bytes(frame_byte)[f.offset : f.offset + f.length])


def test_plain_segments_are_not_packs_and_version_2_needs_frames() -> None:
    plain = CODEC.encode_meta(KEY, encode_segment(SETS, WRITTEN))
    assert not is_pack(plain)
    assert decode_segment(encode_segment(SETS, WRITTEN)).frames == []
    table = [FrameAt(b"\x01" * 32, 0, 5)]
    raw = encode_segment(SETS, WRITTEN, table)
    assert raw[4] == 2 and decode_segment(raw).frames == table
    with pytest.raises(ValueError, match="at least one block"):
        encode_pack(KEY, SETS, [], CODEC)
    with pytest.raises(ValueError, match="32 bytes"):
        encode_segment(SETS, WRITTEN, [FrameAt(b"short", 0, 5)])
