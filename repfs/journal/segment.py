"""Journal segments: a run of consecutive change sets, as bytes (before encryption).

    magic "RJSG" | version u8 | first seq u64 | last seq u64 | change sets u32
    | written at (ns since the epoch) u64
    per change set:  seq u64 | changes u32
    per change:      database u8 (its id in schema.DATABASE_IDS) | put u8 (1) or delete (0)
                     | key length u32 | key | [value length u32 | value]   (puts only)
    version 2 only:  frames u32, then per frame: block id (32) | offset u64 | length u32

Version 2 is the index of a pack object (`journal.pack`): the blocks it carries, each at
`offset` bytes from the start of the pack's frames.

All integers are little-endian. A segment holds every change set from `first` to
`last`, each exactly once and in order; decoding checks that, so a segment that was
cut short or stitched together is refused, never half applied. Encryption and
authentication (bound to the object's key, which names first and last) are the
codec's `encode_meta`.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from repfs.errors import CorruptObject
from repfs.meta.schema import DATABASE_BY_ID, DATABASE_IDS
from repfs.meta.store import Change

MAGIC = b"RJSG"
VERSION = 1
VERSION_PACK = 2
_HEAD = struct.Struct("<4sBQQIQ")
_SET = struct.Struct("<QI")
_CHANGE = struct.Struct("<BBI")
_LEN = struct.Struct("<I")
_FRAME = struct.Struct("<32sQI")
BLOCK_ID_SIZE = 32


@dataclass(frozen=True)
class ChangeSet:
    seq: int
    changes: list[Change]


@dataclass(frozen=True)
class FrameAt:
    """Where a block a pack carries lies: `offset` bytes from the start of the pack's frames
    (in a `Segment`) or of the pack object (from `journal.pack.decode_pack`)."""

    block_id: bytes
    offset: int
    length: int


@dataclass(frozen=True)
class Segment:
    sets: list[ChangeSet]
    written_ns: int
    frames: list[FrameAt] = field(default_factory=list)


def encode_segment(
    sets: Sequence[ChangeSet], written_ns: int | None = None, frames: Sequence[FrameAt] = ()
) -> bytes:
    """A segment's bytes: version 1, or version 2 (a pack's index) when it lists frames."""
    if not sets:
        raise ValueError("a segment holds at least one change set")
    first, last = sets[0].seq, sets[-1].seq
    if [c.seq for c in sets] != list(range(first, last + 1)):
        raise ValueError("change sets of a segment must be consecutive")
    when = time.time_ns() if written_ns is None else written_ns
    out = [_HEAD.pack(MAGIC, VERSION_PACK if frames else VERSION, first, last, len(sets), when)]
    for cs in sets:
        out.append(_SET.pack(cs.seq, len(cs.changes)))
        for db, key, value in cs.changes:
            out.append(_CHANGE.pack(DATABASE_IDS[db], value is not None, len(key)))
            out.append(key)
            if value is not None:
                out.append(_LEN.pack(len(value)))
                out.append(value)
    if frames:
        out.append(_LEN.pack(len(frames)))
        for f in frames:
            if len(f.block_id) != BLOCK_ID_SIZE or f.length <= 0 or f.offset < 0:
                raise ValueError("a frame is a block id of 32 bytes at an offset, of a length > 0")
            out.append(_FRAME.pack(f.block_id, f.offset, f.length))
    return b"".join(out)


def decode_segment(data: bytes, *, where: str = "journal segment") -> Segment:
    view = memoryview(data)
    try:
        magic, version, first, last, count, written_ns = _HEAD.unpack_from(view, 0)
        if magic != MAGIC or version not in (VERSION, VERSION_PACK):
            raise ValueError("not a journal segment of a known version")
        if count != last - first + 1:
            raise ValueError("count does not match the range")
        pos = _HEAD.size
        sets: list[ChangeSet] = []
        for expected in range(first, last + 1):
            seq, n = _SET.unpack_from(view, pos)
            pos += _SET.size
            if seq != expected:
                raise ValueError(f"change set {seq} where {expected} belongs")
            changes: list[Change] = []
            for _ in range(n):
                db_id, is_put, klen = _CHANGE.unpack_from(view, pos)
                pos += _CHANGE.size
                key = bytes(view[pos : pos + klen])
                pos += klen
                value = None
                if is_put:
                    (vlen,) = _LEN.unpack_from(view, pos)
                    pos += _LEN.size
                    value = bytes(view[pos : pos + vlen])
                    pos += vlen
                if len(key) != klen or (value is not None and len(value) != vlen):
                    raise ValueError("cut short")
                db = DATABASE_BY_ID.get(db_id)
                if db is None:
                    raise ValueError(f"unknown database id {db_id} (written by a newer repfs?)")
                changes.append((db, key, value))
            sets.append(ChangeSet(seq, changes))
        frames: list[FrameAt] = []
        if version == VERSION_PACK:
            (n,) = _LEN.unpack_from(view, pos)
            pos += _LEN.size
            for _ in range(n):
                block_id, offset, length = _FRAME.unpack_from(view, pos)
                pos += _FRAME.size
                if length == 0:
                    raise ValueError("a frame of no bytes")
                frames.append(FrameAt(block_id, offset, length))
        if pos != len(view):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError, IndexError) as exc:
        raise CorruptObject(f"{where}: {exc}") from None
    return Segment(sets, written_ns, frames)
