"""The metadata journal: every committed change set goes to the pools, in order.

`JournalWriter.append` is the metadata store's sink: it is called right after each
commit, on the trio thread, and only queues. The `run` service uploads what is queued
as one segment, encrypted and bound to its object key, to `copies` pools (as many as a
block's replicas); a segment counts once `write_quorum` pools hold it. Uploads are grouped: a segment goes
out at once when someone waits for it (fsync), else `delay` seconds after the first
queued change, and everything that arrived meanwhile shares it. `wait_stored(seq)` returns
when every change set up to `seq` is on the pools: fsync waits for it, and so does
garbage collection before it deletes a block.

Every `snapshot_every` change sets (and at unmount) a snapshot of the whole metadata is
stored; then journal segments that no kept snapshot needs are deleted, and snapshots
beyond the newest `keep_snapshots`. The service takes its snapshots in a task of their
own, one at a time: a snapshot of much metadata, and the prune of thousands of segments
after it, must not hold up the next fsync's segment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from repfs.backend.keys import (
    JOURNAL_PREFIX,
    SNAPSHOT_PREFIX,
    journal_key,
    parse_journal_key,
    parse_snapshot_key,
    snapshot_key,
)
from repfs.backend.metaobjects import MetaObjects
from repfs.blocks import packs
from repfs.blocks.layer import PackedAt
from repfs.errors import StorageError
from repfs.inline import INLINE_BYTES
from repfs.journal import snapshot
from repfs.journal.pack import encode_pack
from repfs.journal.segment import ChangeSet, FrameAt, encode_segment
from repfs.meta import schema as s
from repfs.meta.store import Change, MetaStore

log = logging.getLogger(__name__)

MAX_SEGMENT_BYTES = 8 << 20
MAX_PACK_FRAME_BYTES = 8 << 20  # block frames one pack carries (the first one always goes)
MAX_QUEUED_BYTES = 256 << 20
RETRY_DELAY = 1.0


@dataclass(eq=False)
class _Carried:
    block_id: bytes
    obj: bytes
    where: PackedAt | None = None


class MetaCodec(Protocol):
    def encode_meta(self, name: str, plaintext: bytes) -> bytes: ...
    def decode_meta(self, name: str, obj: bytes) -> bytes: ...


def _size(changes: list[Change]) -> int:
    return sum(16 + len(k) + (len(v) if v is not None else 0) for _, k, v in changes)


class JournalWriter:
    def __init__(
        self,
        meta: MetaStore,
        store: MetaObjects,
        codec: MetaCodec,
        *,
        cpu: trio.CapacityLimiter,
        snapshot_every: int = 20_000,
        keep_snapshots: int = 3,
        delay: float = 1.0,
        copies: int | None = None,
    ) -> None:
        self.meta = meta
        self.store = store
        self.codec = codec
        self.cpu = cpu
        self.snapshot_every = snapshot_every
        # At least 2: a prune runs beside uploads, and every segment stored meanwhile starts
        # past the last snapshot but one, so it is never past the oldest kept one's role.
        if keep_snapshots < 2:
            raise ValueError("keep_snapshots must be at least 2")
        self.keep_snapshots = keep_snapshots
        self.delay = delay
        self.copies = copies  # pools each segment and snapshot goes to (None: every pool)
        self.queue: list[ChangeSet] = []
        self.frames: list[_Carried] = []  # blocks waiting to travel in the next segment (a pack)
        self._sizes: list[int] = []  # of each queued change set, as `_size` counts it
        self.queued_bytes = 0
        with meta.read() as t:
            raw = t.get("meta", s.META_JOURNAL_STORED)
        self.stored = s.from_u64(raw) if raw else 0
        self.sending = 0  # the last change set of the segment being uploaded
        self.snapshot_seq = 0  # of the last snapshot this daemon stored
        self.retired_through = 0  # segments up to this change set are past their journal role (pruned)
        self.after_prune: Callable[[], None] = lambda: None  # what runs after a prune (compaction)
        self.error: StorageError | None = None
        self.running = False
        self._stopping = trio.Event()  # the service is to end after its round
        self._stopped = trio.Event()
        self._lock = trio.Lock()
        self._snapshot_lock = trio.Lock()  # one snapshot (and its prune) at a time
        self._snapshotting = False  # the service's own snapshot task is under way
        self._wake = trio.Event()  # something is queued
        self._urgent = trio.Event()  # someone waits for it
        self._progress = trio.Event()
        self.stats = {"segments": 0, "change_sets": 0, "bytes": 0, "snapshots": 0, "packs": 0}
        self._snapshot_wanted = False

    # --- the sink ------------------------------------------------------------------------

    def append(self, seq: int, changes: list[Change]) -> None:
        """Queue a committed change set (called by MetaStore after each commit)."""
        size = _size(changes)
        self.queue.append(ChangeSet(seq, changes))
        self._sizes.append(size)
        self.queued_bytes += size
        self._wake.set()

    def kick(self) -> None:
        """Upload what is queued now, without waiting for the grouping delay."""
        self._urgent.set()

    async def carry(self, block_id: bytes, obj: bytes, *, urgent: bool) -> PackedAt:
        """Send block object `obj` in the next segment, which becomes a pack
        (`journal.pack`), and return where it was stored. The change set that maps the
        block was committed before (so it is in that segment or an earlier one). `urgent`:
        someone waits (an fsync), no grouping delay. Raises the upload's error if it fails
        meanwhile; the block is then not carried at all (its caller stores it again)."""
        carried = _Carried(block_id, obj)
        self.frames.append(carried)
        self._wake.set()
        if urgent or not self.running:
            self._urgent.set()
        try:
            if not self.running:  # no service (a filesystem used without mounting): upload here
                await self.flush()
            while carried.where is None:
                await self._next_progress()
                if carried.where is None and self.error is not None:
                    raise self.error
        except BaseException:
            if carried in self.frames:  # not on its way: it does not go at all
                self.frames.remove(carried)
            raise
        return carried.where

    def snapshot_soon(self) -> None:
        """Store a snapshot at the next round (a pool came back without the journal objects
        it held: a snapshot puts every piece of metadata on `copies` pools again)."""
        self._snapshot_wanted = True
        self._wake.set()
        self._urgent.set()

    @property
    def congested(self) -> bool:
        """Whether so much waits for upload that writers should wait (see `wait_room`)."""
        return self.queued_bytes > MAX_QUEUED_BYTES

    async def wait_room(self) -> None:
        while self.congested:
            await self._next_progress()

    async def wait_stored(self, seq: int | None = None) -> None:
        """Return once change sets up to `seq` (default: all committed) are on the pools;
        raise the upload's error if it fails meanwhile."""
        target = self.meta.seq if seq is None else seq
        if not self.running:  # no service (a filesystem used without mounting): upload here
            await self.flush()
            return
        while self.stored < target:
            if target > self.sending:  # not in the segment on its way: ask for another
                self._urgent.set()
            await self._next_progress()
            if self.stored < target and self.error is not None:
                raise self.error

    async def _next_progress(self) -> None:
        await self._progress.wait()

    def _announce(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    # --- the service ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        try:
            await self._serve(task_status)
        finally:
            self.running = False
            self._stopped.set()

    async def stop(self) -> None:
        """End the service (unmount) once its round is over, without waiting for the grouping
        delay: from then on only the caller's `flush` and `snapshot_now` write, so nothing
        uploads once the metadata is closed. A no-op without a service."""
        if not self.running:
            return
        self._stopping.set()
        self._wake.set()
        self._urgent.set()
        await self._stopped.wait()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as snapshots:  # its end waits for a snapshot under way
            task_status.started()
            await self._rounds(snapshots)

    async def _rounds(self, snapshots: trio.Nursery) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            if not self.congested:
                with trio.move_on_after(self.delay):
                    await self._urgent.wait()
            self._wake = trio.Event()
            self._urgent = trio.Event()
            # One segment per round: what is queued after it waits for the next fsync (or the
            # delay) and shares its segment, rather than holding the next fsync's upload up.
            if not await self.upload_once():
                with trio.move_on_after(RETRY_DELAY):  # back off; a new fsync asks again
                    await self._stopping.wait()
            elif self._stopping.is_set():
                break  # the unmount stores its own snapshot
            elif not self._snapshotting and (
                self._snapshot_wanted or self.meta.seq - self.snapshot_seq >= self.snapshot_every
            ):
                self._snapshot_wanted = False
                self._snapshotting = True
                snapshots.start_soon(self._snapshot_logged)
            if self.queue or self.frames:
                self._wake.set()

    async def _snapshot_logged(self) -> None:
        try:
            await self.snapshot_now()
        except StorageError as exc:
            log.error("cannot store a metadata snapshot, will try again later: %s", exc)
            self.snapshot_seq = self.meta.seq  # not at once: after another `snapshot_every`
        finally:
            self._snapshotting = False

    async def upload_once(self) -> bool:
        """Upload the queued change sets as one segment (the first few MiB of them), with
        the blocks waiting to be carried."""
        async with self._lock:  # one upload at a time: segments go out in order
            if self.frames and not self.queue:  # a snapshot took the change sets: a pack needs one
                with self.meta.write() as t:
                    t.put("meta", s.META_PACK_CARRIER, s.u64(self.meta.seq + 1))
            if not self.queue:
                return True
            return await self._upload_locked()

    async def _upload_locked(self) -> bool:
        batch: list[ChangeSet] = []
        size = 0
        for cs, cs_size in zip(self.queue, self._sizes, strict=True):
            batch.append(cs)
            size += cs_size
            if size >= MAX_SEGMENT_BYTES:
                break
        frames: list[_Carried] = []
        frame_bytes = 0
        for carried in self.frames:
            if frames and frame_bytes + len(carried.obj) > MAX_PACK_FRAME_BYTES:
                break
            frames.append(carried)
            frame_bytes += len(carried.obj)
        key = journal_key(batch[0].seq, batch[-1].seq)
        self.sending = batch[-1].seq
        try:
            if size + frame_bytes <= INLINE_BYTES:  # what an fsync of a small file waits for
                obj, places = self._encode_pack(key, batch, frames) if frames else (self._encode(key, batch), [])
            elif frames:
                obj, places = await trio.to_thread.run_sync(self._encode_pack, key, batch, frames, limiter=self.cpu)
            else:
                obj, places = await trio.to_thread.run_sync(self._encode, key, batch, limiter=self.cpu), []
            pools = await self.store.put_meta(key, obj, copies=self.copies)
        except StorageError as exc:
            if self.error is None:
                log.error("cannot store metadata journal %s, will retry: %s", key, exc)
            self.error = exc
            self.sending = self.stored  # nothing is on its way: a waiting fsync asks again
            self._announce()
            return False
        if self.error is not None:
            log.info("metadata journal stored again")
        self.error = None
        for carried, place in zip(frames, places, strict=True):
            carried.where = PackedAt(key, place.offset, place.length, tuple(pools))
        sent = set(frames)  # by identity: a waiter may have taken its own out meanwhile
        self.frames = [c for c in self.frames if c not in sent]
        self.stats["packs"] += bool(frames)
        self._drop_through(batch[-1].seq)
        self._set_stored(batch[-1].seq)
        self.stats["segments"] += 1
        self.stats["change_sets"] += len(batch)
        self.stats["bytes"] += len(obj)
        return True

    def _drop_through(self, seq: int) -> None:
        """Forget queued change sets up to `seq`: they are on the pools."""
        n = next((i for i, cs in enumerate(self.queue) if cs.seq > seq), len(self.queue))
        self.queued_bytes = max(0, self.queued_bytes - sum(self._sizes[:n]))
        del self.queue[:n]
        del self._sizes[:n]

    def _encode(self, key: str, batch: list[ChangeSet]) -> bytes:
        return self.codec.encode_meta(key, encode_segment(batch))

    def _encode_pack(self, key: str, batch: list[ChangeSet], frames: list[_Carried]) -> tuple[bytes, list[FrameAt]]:
        return encode_pack(key, batch, [(c.block_id, c.obj) for c in frames], self.codec)

    def _set_stored(self, seq: int) -> None:
        self.stored = max(self.stored, seq)
        with self.meta.write() as t:  # a LOCAL_META entry: not journaled itself
            t.put("meta", s.META_JOURNAL_STORED, s.u64(self.stored))
        self._announce()

    async def flush(self) -> None:
        """Upload everything queued now (unmount)."""
        while self.queue or self.frames:
            if not await self.upload_once():
                assert self.error is not None
                raise self.error

    # --- snapshots -------------------------------------------------------------------------

    async def snapshot_now(self) -> int:
        """Store a snapshot of all metadata, then prune what no kept snapshot needs (after
        any snapshot under way)."""
        async with self._snapshot_lock:
            return await self._snapshot_locked()

    async def _snapshot_locked(self) -> int:
        # Which packs still carry live blocks, read before the snapshot: a pack found dead
        # here is dead in the snapshot too, so deleting it cannot orphan a record that only
        # this host's metadata has stopped naming (a compaction's move, a collection).
        with self.meta.read() as t:
            carrying = {k for k, u in packs.every(t) if not u.dead}
        seq, data = await trio.to_thread.run_sync(snapshot.take, self.meta, limiter=self.cpu)
        key = snapshot_key(seq)
        obj = await trio.to_thread.run_sync(self.codec.encode_meta, key, data, limiter=self.cpu)
        await self.store.put_meta(key, obj, copies=self.copies)
        self.snapshot_seq = seq
        self.stats["snapshots"] += 1
        log.info("metadata snapshot %d stored (%d bytes)", seq, len(obj))
        async with self._lock:
            if self.stored < seq:  # the snapshot covers change sets not uploaded yet (or lost in a crash)
                self._drop_through(seq)
                self._set_stored(seq)
        try:
            await self.prune(carrying)
        except StorageError as exc:
            log.warning("cannot prune old metadata objects: %s", exc)
        return seq

    async def prune(self, carrying: set[str]) -> None:
        """Delete snapshots beyond the newest `keep_snapshots`, and the journal segments no
        kept snapshot needs, except packs in `carrying` (they hold live blocks)."""
        snaps = await self.store.list_meta(SNAPSHOT_PREFIX)
        by_seq = sorted(((parse_snapshot_key(k), k) for k in snaps), reverse=True)
        kept = by_seq[: self.keep_snapshots]
        if not kept:
            return
        oldest_kept = kept[-1][0]  # segments up to it are past their journal role
        for _, key in by_seq[self.keep_snapshots :]:
            await self.store.delete_meta(key, snaps[key])
        segments = await self.store.list_meta(JOURNAL_PREFIX)
        for key, holders in segments.items():
            try:
                _, last = parse_journal_key(key)
            except ValueError:
                continue
            if last <= oldest_kept and key not in carrying:  # a pack lives on while blocks are in it
                await self.store.delete_meta(key, holders)
                with self.meta.write() as t:
                    if packs.usage(t, key) is not None:
                        packs.forget(t, key)
        self.retired_through = max(self.retired_through, oldest_kept)
        self.after_prune()

    async def retirement(self) -> int:
        """The change set through which journal segments are past their role: that of the
        oldest kept snapshot, as the last prune found it (or, before this daemon pruned, as
        the pools list them now); 0 with no snapshot."""
        if not self.retired_through:
            snaps = await self.store.list_meta(SNAPSHOT_PREFIX)
            kept = sorted((parse_snapshot_key(k) for k in snaps), reverse=True)[: self.keep_snapshots]
            self.retired_through = kept[-1] if kept else 0
        return self.retired_through
