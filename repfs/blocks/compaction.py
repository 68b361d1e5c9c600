"""Compaction: the live blocks of a mostly dead pack travel again, in a new pack.

A pack (`journal.pack`) lives on while any of its frames is referenced (`blocks.packs`).
Once its journal role is over (the prune passed it) and its live bytes are under half of
its frames' (`PackUsage.sparse`), it keeps more dead bytes than live ones on every holder.
Its live frames are then read by range, checked by digest, handed to the journal like any
new small block (`JournalWriter.carry`: they go out in its next segment, a pack), and their
records moved there. The old pack is left with no live frame, and the next prune deletes it.

Crash safety follows the block layer's order of writes: a record moves only after its new
pack is on the write quorum, and the journal's prune deletes a dead pack only after a
snapshot that holds the move is stored (it reads which packs are dead before it takes the
snapshot). A crash in between leaves a frame that no record names in the new pack, never a
record naming a missing pack. Frames are carried byte for byte: same digest, same length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import trio

from repfs.backend.copies import BlockCopies
from repfs.backend.keys import parse_journal_key
from repfs.backend.poolset import PoolSet
from repfs.blocks import packs
from repfs.blocks.keyedlock import KeyedLock
from repfs.blocks.layer import PackedAt
from repfs.errors import StorageError
from repfs.meta.records import BlockRecord
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

BATCH_BYTES = 8 << 20  # frames read and carried at a time (about one new pack)
READS = 4  # frames read at once
SCAN_CHUNK = 10_000  # block records looked at per step of the scan (the event loop runs between)


class Carrier(Protocol):
    """The journal, as compaction uses it."""

    async def retirement(self) -> int:
        """Segments up to this change set are past their journal role."""
        ...

    async def carry(self, block_id: bytes, obj: bytes, *, urgent: bool) -> PackedAt: ...


@dataclass(frozen=True)
class _Live:
    pack: str
    block_id: bytes
    digest: bytes
    holders: tuple[str, ...]
    offset: int
    length: int


class PackCompactor:
    def __init__(
        self,
        meta: MetaStore,
        journal: Carrier,
        copies: BlockCopies,
        pools: PoolSet,
        locks: KeyedLock,
        *,
        interval: float = 600.0,
    ) -> None:
        self.meta = meta
        self.journal = journal
        self.copies = copies
        self.pools = pools
        self.locks = locks
        self.interval = interval
        self._wake = trio.Event()
        self.stats = {"packs_compacted": 0, "frames_moved": 0}

    def wake(self) -> None:
        """Look for sparse packs now (the journal pruned: some packs' journal role ended)."""
        self._wake.set()

    async def candidates(self) -> list[str]:
        """Packs past their journal role with live frames under half of their bytes."""
        retired = await self.journal.retirement()
        with self.meta.read() as t:
            return [k for k, u in packs.every(t) if u.sparse and _last(k) <= retired]

    async def compact_once(self) -> int:
        """Compact every candidate pack; returns how many were emptied of live frames."""
        keys = await self.candidates()
        if not keys:
            return 0
        frames = await self._live_frames(set(keys))
        moved = 0
        try:
            moved = await self._compact(frames)
        finally:
            with self.meta.read() as t:
                emptied = [k for k in keys if (u := packs.usage(t, k)) is None or u.dead]
            self.stats["packs_compacted"] += len(emptied)
            self.stats["frames_moved"] += moved
            if moved:
                log.info("compaction: %d live blocks of %d sparse packs carried into new packs; %d packs emptied",
                         moved, len(keys), len(emptied))  # fmt: skip
        return len(emptied)

    async def _live_frames(self, keys: set[str]) -> list[_Live]:
        """The live blocks of packs `keys`, from one scan of the block records, pack by pack."""
        out: list[_Live] = []
        start: bytes | None = None
        while True:
            n = 0
            with self.meta.read() as t:
                for block_id, raw in t.scan("blocks", b"", start):
                    if block_id == start:
                        continue
                    n += 1
                    start = block_id
                    rec = BlockRecord.unpack(raw)
                    if rec.in_pack in keys and rec.refcount > 0:
                        out.append(_Live(rec.in_pack, block_id, rec.digest, rec.pools, rec.offset, rec.stored_size))
                    if n >= SCAN_CHUNK:
                        break
            if n < SCAN_CHUNK:
                return sorted(out, key=lambda f: (f.pack, f.offset))
            await trio.lowlevel.checkpoint()

    async def _compact(self, frames: list[_Live]) -> int:
        """Carry `frames` into new packs, about one per `BATCH_BYTES`; how many moved.
        Raises StorageError if the journal cannot store them (a later pass goes on)."""
        moved = 0
        batch: list[_Live] = []
        size = 0
        for f in frames:
            if batch and size + f.length > BATCH_BYTES:
                moved += await self._carry_batch(batch)
                batch, size = [], 0
            batch.append(f)
            size += f.length
        return moved + (await self._carry_batch(batch) if batch else 0)

    async def _carry_batch(self, batch: list[_Live]) -> int:
        objs: dict[bytes, bytes] = {}
        limiter = trio.CapacityLimiter(READS)

        async def read(f: _Live) -> None:
            async with limiter:
                obj = await self._read_frame(f)
            if obj is not None:
                objs[f.block_id] = obj

        async with trio.open_nursery() as nursery:
            for f in batch:
                nursery.start_soon(read, f)
        places: dict[bytes, PackedAt] = {}

        async def carry(f: _Live, obj: bytes) -> None:
            places[f.block_id] = await self.journal.carry(f.block_id, obj, urgent=False)

        async with trio.open_nursery() as nursery:  # together: they share the new pack
            for f in batch:
                if f.block_id in objs:
                    nursery.start_soon(carry, f, objs[f.block_id])
        moved = 0
        for f in batch:
            if f.block_id in places:
                moved += await self._move(f, places[f.block_id])
        return moved

    async def _read_frame(self, f: _Live) -> bytes | None:
        """The frame from the first holder with a good copy; a block with none is listed for
        the repair (which writes it out from wherever it can, or reports it)."""
        tried = []
        for h in f.holders:
            if h not in self.pools.pool_names or not self.pools.state(h).serves:
                continue
            obj, why = await self.copies.read_copy(h, f.block_id, f.digest, (f.pack, f.offset, f.length))
            if obj is not None:
                return obj
            tried.append(f"{h} ({why})")
        log.warning("block %s in pack %s: no good frame to compact from (%s); left to the repair",
                    f.block_id.hex()[:12], f.pack, ", ".join(tried) or "no holder serves")  # fmt: skip
        with self.meta.write() as t:
            if t.block_record(f.block_id) is not None:
                t.put("deficit", f.block_id, b"")
        return None

    async def _move(self, f: _Live, at: PackedAt) -> int:
        """Point the block's record at its new frame, unless it moved meanwhile (repair wrote
        it out, garbage collection took it): then the new frame is dead from the start."""
        async with self.locks(f.block_id):
            with self.meta.write() as t:
                rec = t.block_record(f.block_id)
                if rec is None or rec.in_pack != f.pack or rec.offset != f.offset:
                    packs.recorded(t, at.key, at.length)
                    packs.released(t, at.key, at.length)
                    return 0
                packs.released(t, f.pack, rec.stored_size)
                packs.place(t, f.block_id, rec, at, self.pools.replicas)
        return 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: compact at once (packs earlier mounts left), after each prune of the
        journal and every `interval` seconds."""
        task_status.started()
        while True:
            try:
                await self.compact_once()
            except StorageError as exc:
                log.warning("compaction of sparse packs left for later: %s", exc)
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()


def _last(key: str) -> int:
    try:
        return parse_journal_key(key)[1]
    except ValueError:
        return 1 << 64
