"""How much of each pack (`journal.pack`) is still referenced: the `packs` table.

| database | key | value |
|---|---|---|
| packs | the pack's object key (UTF-8) | live frames u32 ‖ live bytes u64 ‖ frames u32 ‖ frame bytes u64 (big-endian) |

A row is made when the first block record points into the pack and counts every frame
recorded there; garbage collection takes a frame off when its block's last reference
goes. A pack with no live frame is deleted by the journal's prune once its journal role
is over (`dead`); one whose live bytes are under half of its frames' is `sparse` and has
its live blocks carried into a new pack (`blocks.compaction`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from repfs.blocks.layer import PackedAt
from repfs.meta.records import BlockRecord
from repfs.meta.store import Txn

_ROW = struct.Struct(">IQIQ")


@dataclass
class PackUsage:
    live_frames: int
    live_bytes: int
    frames: int
    frame_bytes: int

    @property
    def dead(self) -> bool:
        return self.live_frames <= 0

    @property
    def sparse(self) -> bool:
        return 0 < self.live_bytes * 2 < self.frame_bytes


def usage(t: Txn, key: str) -> PackUsage | None:
    raw = t.get("packs", key.encode())
    return None if raw is None else PackUsage(*_ROW.unpack(raw))


def _put(t: Txn, key: str, u: PackUsage) -> None:
    t.put("packs", key.encode(), _ROW.pack(u.live_frames, u.live_bytes, u.frames, u.frame_bytes))


def recorded(t: Txn, key: str, length: int) -> None:
    """A block record now points at a frame of `length` bytes in pack `key`."""
    u = usage(t, key) or PackUsage(0, 0, 0, 0)
    u.live_frames += 1
    u.live_bytes += length
    u.frames += 1
    u.frame_bytes += length
    _put(t, key, u)


def place(t: Txn, block_id: bytes, rec: BlockRecord, at: PackedAt, replicas: int) -> None:
    """Block `block_id`'s record (`rec`) now names its frame `at`: where it is, the pack's
    pools, and the frame counted; listed for the repair when fewer than `replicas` pools
    hold the pack."""
    rec.pools, rec.in_pack, rec.offset = at.pools, at.key, at.offset
    t.put_block_record(block_id, rec)
    recorded(t, at.key, at.length)
    if len(at.pools) < replicas:  # short of copies: the repair writes it out
        t.put("deficit", block_id, b"")


def released(t: Txn, key: str, length: int) -> None:
    """The block at a frame of `length` bytes in pack `key` is gone (collected, or written
    out as its own object)."""
    u = usage(t, key)
    if u is None:
        return
    u.live_frames = max(0, u.live_frames - 1)
    u.live_bytes = max(0, u.live_bytes - length)
    _put(t, key, u)


def forget(t: Txn, key: str) -> None:
    t.delete("packs", key.encode())


def every(t: Txn) -> Iterator[tuple[str, PackUsage]]:
    for k, v in t.scan("packs", b""):
        yield k.decode(), PackUsage(*_ROW.unpack(v))
