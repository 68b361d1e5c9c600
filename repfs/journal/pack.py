"""Pack objects: a journal segment that carries small blocks with it (issue 21).

An fsync'd small file then costs one object per copy: its block and the metadata that
maps it travel together. Each block is its own frame, byte for byte the object
`BlockCodec.encode` makes (authenticated and bound to its block id), so one frame is read
with a ranged GET and decoded like a block object; the index, a segment of version 2 that
lists the frames, is a metadata object bound to the pack's key. docs/FORMAT.md has the
layout and the rules of a pack's life.

    pack  = magic "RPAK" | version u8 (1) | 3 zero bytes | index length u32 (big-endian)
            | index (encode_meta(key, segment of version 2)) | frame × n
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from repfs.errors import CorruptObject
from repfs.journal.segment import ChangeSet, FrameAt, Segment, decode_segment, encode_segment

MAGIC = b"RPAK"
VERSION = 1
_HEAD = struct.Struct(">4sB3xI")
HEAD_SIZE = _HEAD.size


class MetaCodec(Protocol):
    def encode_meta(self, name: str, plaintext: bytes) -> bytes: ...
    def decode_meta(self, name: str, obj: bytes) -> bytes: ...


@dataclass(frozen=True)
class Pack:
    segment: Segment  # its frames' offsets count from the start of the pack object
    frames_start: int


def is_pack(obj: bytes | memoryview) -> bool:
    """Whether a journal object is a pack (else a plain segment: a metadata object)."""
    return bytes(obj[:4]) == MAGIC


def encode_pack(
    key: str,
    sets: Sequence[ChangeSet],
    frames: Sequence[tuple[bytes, bytes]],
    codec: MetaCodec,
    written_ns: int | None = None,
) -> tuple[bytes, list[FrameAt]]:
    """The pack object for change sets `sets` carrying `frames` (block id, block object),
    and where each frame lies in it (offsets from the object's first byte)."""
    if not frames:
        raise ValueError("a pack carries at least one block")
    table, pos = [], 0
    for block_id, obj in frames:
        table.append(FrameAt(block_id, pos, len(obj)))
        pos += len(obj)
    index = codec.encode_meta(key, encode_segment(sets, written_ns, table))
    start = HEAD_SIZE + len(index)
    out = b"".join([_HEAD.pack(MAGIC, VERSION, len(index)), index, *(obj for _, obj in frames)])
    return out, [replace(f, offset=start + f.offset) for f in table]


def decode_pack(key: str, obj: bytes, codec: MetaCodec) -> Pack:
    """The segment a pack holds, with its frames' places in the object; CorruptObject for
    anything that does not add up (a frame is authenticated only when it is decoded)."""
    where = f"pack {key}"
    try:
        magic, version, index_len = _HEAD.unpack_from(obj, 0)
    except struct.error:
        raise CorruptObject(f"{where}: shorter than its head") from None
    if magic != MAGIC or version != VERSION:
        raise CorruptObject(f"{where}: not a pack of a known version")
    start = HEAD_SIZE + index_len
    if start > len(obj):
        raise CorruptObject(f"{where}: its index runs past the end ({index_len} bytes)")
    segment = decode_segment(codec.decode_meta(key, obj[HEAD_SIZE:start]), where=where)
    pos = 0
    for f in segment.frames:
        if f.offset != pos:
            raise CorruptObject(f"{where}: frames are not back to back")
        pos += f.length
    if not segment.frames or start + pos != len(obj):
        raise CorruptObject(f"{where}: {len(obj) - start} bytes of frames, the index says {pos}")
    frames = [replace(f, offset=start + f.offset) for f in segment.frames]
    return Pack(replace(segment, frames=frames), start)
