"""Blocks of files: from a cached block's bytes to replicated objects, and back.

`BlockManager` is where the file layer (inode, block index) meets the store (block id,
objects): it hashes, encodes, deduplicates, counts references and deletes blocks no
file references any more.

Order of writes (what makes a crash at any point safe): objects are stored before the
block map points at them; objects are deleted only after the metadata that stopped
referencing them is durable. Work on one block id (store, fetch, delete) holds that
block's lock, so a block being deleted is never at the same time being re-stored.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

import trio

from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.state import object_digest
from repfs.blocks import packs
from repfs.blocks.keyedlock import KeyedLock
from repfs.blocks.layer import MappingJournal
from repfs.errors import RepfsError
from repfs.inline import INLINE_BYTES
from repfs.meta.records import BlockRecord
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)


def _all_zeros(data: bytes) -> bool:
    # Data that is not all zeros almost always says so in its first or last byte; only
    # then compare it all (memcmp against a zero buffer, not a count of every byte).
    return not data or (data[0] == 0 and data[-1] == 0 and data == bytes(len(data)))


class Codec(Protocol):
    def block_id(self, plaintext: bytes) -> bytes: ...
    def encode(self, block_id: bytes, plaintext: bytes, *, hashed: bool = False) -> bytes: ...
    def decode(self, block_id: bytes, obj: bytes) -> bytes: ...


class BlockManager:
    def __init__(
        self,
        meta: MetaStore,
        codec: Codec,
        store: ReplicatedStore,
        pools: PoolSet,
        *,
        block_size: int,
        cpu: trio.CapacityLimiter,
        journal: MappingJournal,
        pack_max: int = 0,
    ) -> None:
        self.meta = meta
        self.pack_max = pack_max  # objects up to this size travel in the journal's packs (0: none)
        self.journal = journal
        self._mapped_seq: dict[int, int] = {}  # inode → the change set that last mapped one of its blocks
        self._awaited: Counter[int] = Counter()  # inode → fsyncs in progress
        self.codec = codec
        self.replicated = store
        self.pools = pools  # placement: the targets of a block, and every pool for GC
        self.block_size = block_size
        self.cpu = cpu
        self.locks = KeyedLock()
        self._gc_wake = trio.Event()
        self.stats = {"stored": 0, "packed": 0, "deduplicated": 0, "fetched": 0, "deleted": 0, "holes": 0}

    # --- read -----------------------------------------------------------------------
    async def fetch(self, ino: int, index: int) -> bytes | None:
        """The plaintext of a file's block, or None for a hole."""
        with self.meta.read() as t:
            block_id = t.block_of(ino, index)
            rec = t.block_record(block_id) if block_id is not None else None
        if block_id is None:
            return None
        holders = rec.pools if rec is not None else ()
        place = (rec.in_pack, rec.offset, rec.stored_size) if rec is not None and rec.in_pack else None
        async with self.locks(block_id):
            decode = functools.partial(self.codec.decode, block_id)
            data = await self.replicated.get_block(
                block_id,
                holders,
                decode,
                size_hint=rec.stored_size if rec is not None else None,
                place=place,
                on_damaged=functools.partial(self._damaged_frame, block_id),
            )
        self.stats["fetched"] += 1
        return data

    def _damaged_frame(self, block_id: bytes) -> None:
        """A holder of a packed block lacks its pack or has it damaged: the repair writes
        the block out as its own object (a frame cannot be put back into a pack)."""
        with self.meta.write() as t:
            if t.block_record(block_id) is not None:
                t.put("deficit", block_id, b"")

    def is_mapped(self, ino: int, index: int) -> bool:
        with self.meta.read() as t:
            return t.block_of(ino, index) is not None

    def mapped_size(self, ino: int, index: int) -> int:
        """Plaintext bytes of the stored block at (ino, index); 0 for a hole."""
        with self.meta.read() as t:
            block_id = t.block_of(ino, index)
            rec = t.block_record(block_id) if block_id is not None else None
        return rec.size if rec is not None else 0

    # --- write ----------------------------------------------------------------------
    async def store(self, ino: int, index: int, data: bytes, current: Callable[[], bool] = lambda: True) -> None:
        """Make `data` the content of block `index` of `ino`, durably on the pools.

        `current()` is asked when the block is about to be mapped: a block truncated away
        while it was being stored must not come back (it is stored, unmapped, and collected).
        """
        if _all_zeros(data):  # a hole stores nothing
            with self.meta.write() as t:
                if current() and t.inode_or_none(ino) is not None:
                    t.unmap_block(ino, index)
            self.stats["holes"] += 1
            self._gc_wake.set()
            return
        if len(data) <= INLINE_BYTES:  # cheaper than a trip to a worker thread
            block_id = self.codec.block_id(data)
        else:
            block_id = await trio.to_thread.run_sync(self.codec.block_id, data, limiter=self.cpu)
        async with self.locks(block_id):
            with self.meta.read() as t:
                rec = t.block_record(block_id)
            obj: bytes | None = None
            if rec is not None and rec.refcount > 0 and rec.pools:
                digest, stored_size = rec.digest, rec.stored_size
                self.stats["deduplicated"] += 1
            else:
                if len(data) <= INLINE_BYTES:
                    encoded, digest = self._encode(block_id, data)
                else:
                    encoded, digest = await trio.to_thread.run_sync(self._encode, block_id, data, limiter=self.cpu)
                obj, stored_size = encoded, len(encoded)
            targets = set(self.pools.targets(block_id))
            with self.meta.write() as t:
                inode = t.inode_or_none(ino)
                live = current() and inode is not None and index * self.block_size < inode.size
                rec = t.block_record(block_id)
                if not live and rec is None:
                    return  # truncated or deleted meanwhile, and nothing else holds this block
                rec = rec or BlockRecord(len(data), stored_size, 0, (), digest)
                if live:
                    rec.refcount += 1
                    t.delete("gc", block_id)
                elif rec.refcount <= 0:
                    t.put("gc", block_id, b"")
                t.put_block_record(block_id, rec)
                if live:
                    t.map_block(ino, index, block_id)
            if live:
                self._note_mapped(ino)
            if obj is None or not live:
                self._gc_wake.set()
                return
            # The block map is committed first and its journal upload starts now, while the
            # object is stored: fsync waits for both, in parallel. Until the object is stored
            # the record names no pool (recovery checks such blocks; see journal.replay).
            if len(obj) <= self.pack_max:  # carried in the journal's next segment, a pack
                await self._store_packed(block_id, obj)
                self._gc_wake.set()
                return
            if self._awaited[ino]:  # someone waits: no grouping delay
                self.journal.kick()
            pools = await self.replicated.put_block(block_id, obj)
            self.stats["stored"] += 1
            with self.meta.write() as t:
                rec = t.block_record(block_id)
                if rec is not None:
                    rec.pools = tuple(dict.fromkeys([*pools, *rec.pools]))
                    t.put_block_record(block_id, rec)
                    if set(rec.pools) != targets:  # short of copies, or misplaced
                        t.put("deficit", block_id, b"")
        self._gc_wake.set()

    async def _store_packed(self, block_id: bytes, obj: bytes) -> None:
        """One object for the block and the metadata that maps it: the block travels in the
        journal segment. Its record then names the pack, the place in it and the pack's
        pools (replay finds the same from the pack's index after a crash).

        Always without the grouping delay: this upload holds one of the cache's few upload
        slots while it waits, so a delay would cap small files at a few a second. Blocks
        that come while a segment is on its way share the next one."""
        at = await self.journal.carry(block_id, obj, urgent=True)
        self.stats["stored"] += 1
        self.stats["packed"] += 1
        with self.meta.write() as t:
            rec = t.block_record(block_id)
            if rec is not None:
                packs.place(t, block_id, rec, at, self.pools.replicas)

    def _note_mapped(self, ino: int) -> None:
        self._mapped_seq[ino] = max(self._mapped_seq.get(ino, 0), self.meta.seq)
        if len(self._mapped_seq) > 10_000:  # forget what is on the pools already
            stored = self.journal.stored
            self._mapped_seq = {i: q for i, q in self._mapped_seq.items() if q > stored}

    @contextlib.contextmanager
    def awaited(self, ino: int) -> Iterator[None]:
        """Someone waits for `ino`'s blocks (an fsync): their mappings are journaled at
        once, without the grouping delay."""
        self._awaited[ino] += 1
        try:
            yield
        finally:
            self._awaited[ino] -= 1
            if not self._awaited[ino]:
                del self._awaited[ino]

    async def durable(self, ino: int | None = None, since: int | None = None) -> None:
        """Return once the metadata up to change set `since` and every change set that
        mapped a block of `ino` are on the pools (with `ino` None: everything committed)."""
        if ino is None:
            await self.journal.wait_stored(None)
            return
        target = max(since or 0, self._mapped_seq.get(ino, 0))
        await self.journal.wait_stored(target)
        if self._mapped_seq.get(ino, 0) <= target:
            self._mapped_seq.pop(ino, None)

    def _encode(self, block_id: bytes, data: bytes) -> tuple[bytes, bytes]:
        obj = self.codec.encode(block_id, data, hashed=True)  # `store` hashed these very bytes
        return obj, object_digest(obj)

    def drop(self, t: Txn, ino: int, first_index: int) -> None:
        """Unmap the blocks of `ino` from `first_index` on (truncate, delete), inside `t`."""
        for index, _ in list(t.blocks_from(ino, first_index)):
            t.unmap_block(ino, index)
        self._gc_wake.set()

    def challenge_sample(self, pool: str, n: int | None) -> list[tuple[bytes, bytes, tuple[str, int, int] | None]]:
        """Up to `n` (all if None) random live blocks `pool` should hold, with their digests
        and, for a packed block, where its frame lies."""
        rng = random.Random()
        picked: list[tuple[bytes, bytes, tuple[str, int, int] | None]] = []
        seen = 0
        with self.meta.read() as t:
            for block_id, raw in t.scan("blocks", b""):
                rec = BlockRecord.unpack(raw)
                if pool not in rec.pools or rec.refcount <= 0 or not rec.digest:
                    continue
                seen += 1
                if n is None or len(picked) < n:
                    picked.append((block_id, rec.digest, rec.place))
                else:  # reservoir sampling: every block equally likely
                    j = rng.randrange(seen)
                    if j < n:
                        picked[j] = (block_id, rec.digest, rec.place)
        return picked

    # --- garbage collection -----------------------------------------------------------
    def pending_gc(self) -> int:
        with self.meta.read() as t:
            return sum(1 for _ in t.scan("gc", b""))

    async def collect(self) -> int:
        """Delete every block whose refcount reached zero; returns how many were deleted."""
        with self.meta.read() as t:
            candidates = [k for k, _ in t.scan("gc", b"")]
        if not candidates:
            return 0
        # the metadata that dropped the references is durable first (on the pools' journal)
        await self.journal.wait_stored()
        deleted = 0
        for block_id in candidates:
            async with self.locks(block_id):
                with self.meta.read() as t:
                    rec = t.block_record(block_id)
                if rec is not None and rec.refcount > 0:
                    with self.meta.write() as t:
                        t.delete("gc", block_id)
                    continue
                if rec is not None and rec.in_pack:  # its frame dies with the pack (the journal's prune)
                    with self.meta.write() as t:
                        packs.released(t, rec.in_pack, rec.stored_size)
                        t.delete("blocks", block_id)
                        t.delete("gc", block_id)
                        t.delete("deficit", block_id)
                    deleted += 1
                    continue
                failed = await self.replicated.delete_block(
                    block_id,
                    self.pools.pool_names,
                    stored_size=rec.stored_size if rec is not None else 0,
                    recorded=rec.pools if rec is not None else (),
                )
                with self.meta.write() as t:
                    if failed and rec is not None:
                        rec.pools = tuple(failed)
                        t.put_block_record(block_id, rec)
                        continue
                    t.delete("blocks", block_id)
                    t.delete("gc", block_id)
                    t.delete("deficit", block_id)
                deleted += 1
        self.stats["deleted"] += deleted
        return deleted

    async def run_gc(
        self, *, interval: float = 5.0, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Service: delete unreferenced blocks soon after they become unreferenced."""
        task_status.started()
        while True:
            with trio.move_on_after(interval):
                await self._gc_wake.wait()
            self._gc_wake = trio.Event()
            try:
                await self.collect()
            except RepfsError as exc:
                log.error("garbage collection failed, will retry: %s", exc)
