"""Repair: bring every block back to `replicas` good copies on its placement pools.

A block whose copies are not exactly on its target pools (`PoolSet.targets`) is listed in
the `deficit` table: it was written while a target pool was down (a stand-in took the
copy) or full, or a copy was found missing or damaged. The repair service works that
list off in the background whenever pools come back, and at an interval; `repair_block`
is also what scrub calls on every block, with `deep=True`, to check each copy's digest.

Per block, under the block's lock:
1. every holder that serves is trusted, or, for a block on the deficit list, asked whether
   it still has the object (a pool that came back may have lost it), or, when deep, read
   and checked by digest;
2. each target pool that serves and lacks a good copy gets one, copied from a verified
   good copy and paced by the rate limit;
3. once every target holds a good copy, the record lists exactly the targets, the
   metadata is synced, and then the copies on other pools (stand-ins, damaged copies)
   are deleted. A crash in between leaves an orphan object, never a missing one.
Holders that do not serve now (down, verifying, failed) stay in the record: they may
still hold a copy that garbage collection must delete one day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from repfs.backend.copies import BlockCopies
from repfs.backend.poolset import PoolSet
from repfs.blocks import packs
from repfs.blocks.keyedlock import KeyedLock
from repfs.errors import StorageError
from repfs.fs.ratelimit import RateLimit
from repfs.meta.records import BlockRecord
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

BATCH = 256  # deficit entries looked at per round
QUEUE_BATCH = 10_000  # deficit entries written per transaction


def _marks(value: bytes | None) -> set[str]:
    """The pools whose copies of a listed block must be read and checked by digest (the
    `deficit` value: their names, comma-separated; empty for none)."""
    return set(value.decode().split(",")) if value else set()


def _pack_marks(pools: set[str]) -> bytes:
    return ",".join(sorted(pools)).encode()


@dataclass
class Outcome:
    """What repairing one block did."""

    copies_checked: int = 0
    repaired: int = 0  # copies written
    moved: int = 0  # of those, copies placed on a pool that never held one (rebalance, catch-up)
    removed: int = 0  # extra or damaged copies deleted
    complete: bool = True  # every target holds a good copy
    unrecoverable: bool = False  # no good copy anywhere that serves, and none that might


class Repairer:
    def __init__(
        self,
        meta: MetaStore,
        pools: PoolSet,
        copies: BlockCopies,
        locks: KeyedLock,
        *,
        rate: RateLimit | None = None,
        concurrency: int = 2,
        interval: float = 30.0,
    ) -> None:
        self.meta = meta
        self.pools = pools
        self.copies = copies
        self.locks = locks
        self.rate = rate or RateLimit(None)
        self.concurrency = concurrency
        self.interval = interval
        self._wake = trio.Event()
        self.stats = {"repaired": 0, "removed": 0, "unrecoverable": 0}

    def wake(self) -> None:
        """Look at the deficit now (a pool came back, a block was written short)."""
        self._wake.set()

    def deficit(self) -> int:
        """How many blocks are short of copies on their placement pools."""
        with self.meta.read() as t:
            return sum(1 for _ in t.scan("deficit", b""))

    def queue_pool(self, pool: str, bad: Sequence[bytes] = ()) -> int:
        """List every block `pool` holds as short of copies (the pool failed: its copies are
        not trusted, so each of its blocks gets a copy elsewhere); returns how many. The
        blocks in `bad` (its challenge found them missing or damaged) stop naming it, so
        they are written to it again if it is ever accepted back."""
        with self.meta.read() as t:
            held = [k for k, v in t.scan("blocks", b"") if pool in BlockRecord.unpack(v).pools]
            marks = {k: t.get("deficit", k) or b"" for k in held}
        for i in range(0, len(held), QUEUE_BATCH):
            with self.meta.write() as t:
                for block_id in held[i : i + QUEUE_BATCH]:
                    t.put("deficit", block_id, marks[block_id])
        with self.meta.write() as t:
            for block_id in bad:
                rec = t.block_record(block_id)
                if rec is not None and pool in rec.pools:
                    rec.pools = tuple(n for n in rec.pools if n != pool)
                    t.put_block_record(block_id, rec)
        log.warning("pool %s: %d blocks it held get a copy elsewhere", pool, len(held))
        self.wake()
        return len(held)

    def queue_return(self, pool: str, verify: bool = False) -> int:
        """A pool is back as it is (it came back empty, or an administrator accepted it):
        list every block it holds or should hold, so that the repair asks it for each one
        and copies back what it lacks; returns how many. With `verify` (a pool that had
        failed), each of its copies is read and checked by digest, not only asked for: it
        is trusted, and the stand-ins deleted, only once it is proven good."""
        with self.meta.read() as t:
            wanted = [
                k for k, v in t.scan("blocks", b"")
                if pool in BlockRecord.unpack(v).pools or pool in self.pools.targets(k)
            ]  # fmt: skip
            marks = {k: _marks(t.get("deficit", k)) | ({pool} if verify else set()) for k in wanted}
        for i in range(0, len(wanted), QUEUE_BATCH):  # bounded transactions (and journal change sets)
            with self.meta.write() as t:
                for block_id in wanted[i : i + QUEUE_BATCH]:
                    t.put("deficit", block_id, _pack_marks(marks[block_id]))
        log.warning("pool %s: %d blocks it should hold are checked and copied back where missing", pool, len(wanted))
        self.wake()
        return len(wanted)

    async def repair_block(
        self,
        block_id: bytes,
        *,
        deep: bool = False,
        reads: RateLimit | None = None,
        listed: bool = False,
        verify: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Repair one block (see the module docstring); `reads` paces deep reads. A block
        `listed` on the deficit list is in doubt: each holder that serves is asked whether
        it still has the object (the pool may have come back empty), and pools that are
        neither its targets nor holders whether they hold a copy anyway (a write cancelled
        at its deadline may still land: its thread is abandoned, not stopped); such copies
        are deleted once the block is complete. Only for the deficit list: a scrub of every
        block would pay a request per pool and block. The copies on the pools in `verify`
        are read and checked by digest, as a deep repair does for every pool."""
        out = Outcome()
        short = block_id.hex()[:12]
        async with self.locks(block_id):
            with self.meta.read() as t:
                rec = t.block_record(block_id)
            if rec is None or rec.refcount <= 0:  # garbage collection's business
                with self.meta.write() as t:
                    t.delete("deficit", block_id)
                return out
            if rec.in_pack:
                await self._repair_packed(block_id, rec, out, deep=deep or listed, reads=reads, verify=verify)
                return out
            known = set(self.pools.pool_names)
            serving = {n for n in known if self.pools.state(n).serves}
            targets = self.pools.targets(block_id)
            holders = list(dict.fromkeys(rec.pools))
            absent = [h for h in holders if h not in serving]  # may hold a copy; cannot tell now
            good: set[str] = set()
            bad: dict[str, str] = {}
            obj: bytes | None = None
            for h in [n for n in self.pools.ranked(block_id) if n in holders and n in serving]:
                if not deep and h not in verify:
                    if listed and not await self.copies.has_copy(h, block_id):
                        bad[h] = "missing"
                    else:
                        good.add(h)
                    continue
                got, why = await self._check_copy(h, block_id, rec, out, reads)
                if got is None:
                    bad[h] = why
                else:
                    good.add(h)
                    obj = obj or got
            if deep:  # a target that is no holder may still have the object (an interrupted repair)
                for t_name in targets:
                    if t_name in serving and t_name not in holders:
                        got, _ = await self.copies.read_copy(t_name, block_id, rec.digest)
                        out.copies_checked += 1
                        if got is not None:
                            good.add(t_name)
                            obj = obj or got
            need = [n for n in targets if n in serving and n not in good]
            if need and obj is None:
                obj = await self._good_object(block_id, rec.digest, good, bad)
            if need and obj is None:
                out.complete = False
                out.unrecoverable = not absent
                tried = ", ".join(f"{n} ({why})" for n, why in bad.items()) or "no pool serves a holder"
                log.error(
                    "block %s: no good copy to repair from%s; tried: %s",
                    short,
                    "" if absent else " (unrecoverable)",
                    tried,
                )
            elif obj is not None:
                for name in need:
                    await self.rate.take(len(obj))
                    try:
                        await self.copies.put_copy(name, block_id, obj)
                    except StorageError as exc:
                        log.warning("cannot repair block %s on pool %s: %s", short, name, exc)
                        continue
                    why = bad.pop(name, "missing")
                    good.add(name)
                    out.repaired += 1
                    if name in holders:  # a copy that should have been there: real damage
                        log.info("repaired block %s on pool %s (was %s)", short, name, why)
                    else:  # a new home (placement changed, or written while the pool was away)
                        out.moved += 1
                        log.debug("copied block %s to pool %s", short, name)
            out.complete = all(n in good for n in targets)
            extras = [n for n in good | set(bad) if n not in targets] if out.complete else []
            if listed and out.complete:
                for name in [n for n in serving if n not in targets and n not in holders and n not in extras]:
                    try:
                        if await self.copies.has_copy(name, block_id):
                            extras.append(name)
                    except StorageError:
                        pass  # asked again the next time the block is repaired, or found by fsck
            keep = set(targets) if out.complete else good
            with self.meta.write() as t:
                rec = t.block_record(block_id)
                if rec is None:
                    return out
                rec.pools = tuple(n for n in self.pools.ranked(block_id) if n in keep or n in absent or n in bad)
                if out.complete:
                    rec.pools = tuple(n for n in rec.pools if n not in extras)
                t.put_block_record(block_id, rec)
                if out.complete and not absent:
                    t.delete("deficit", block_id)
                else:  # still in doubt: so are the copies to verify
                    t.put("deficit", block_id, _pack_marks(set(verify) - good))
            if extras:
                self.meta.sync()  # the record that stopped naming them is durable first
                for name in extras:
                    try:
                        await self.copies.delete_copy(name, block_id)
                        out.removed += 1
                    except StorageError as exc:
                        log.warning("cannot delete extra copy of block %s on pool %s: %s", short, name, exc)
        self.stats["repaired"] += out.repaired
        self.stats["removed"] += out.removed
        self.stats["unrecoverable"] += out.unrecoverable
        return out

    async def _check_copy(
        self, name: str, block_id: bytes, rec: BlockRecord, out: Outcome, reads: RateLimit | None
    ) -> tuple[bytes | None, str]:
        """Read pool `name`'s copy of the block (its frame, for a packed one) and check it by
        digest, paced by `reads` and counted in `out`: `BlockCopies.read_copy`'s answer."""
        if reads is not None:
            await reads.take(rec.stored_size)
        got, why = await self.copies.read_copy(name, block_id, rec.digest, rec.place)
        out.copies_checked += 1
        return got, why

    async def _repair_packed(
        self,
        block_id: bytes,
        rec: BlockRecord,
        out: Outcome,
        *,
        deep: bool,
        reads: RateLimit | None,
        verify: frozenset[str],
    ) -> None:
        """A packed block (under its lock): its copies are its frame in each of the pack's
        holders. With `replicas` good ones on pools that keep blocks there is nothing to do;
        otherwise the block is written out as its own object on its targets, its record
        moved there, and from then on it is repaired like any block."""
        place = rec.place
        assert place is not None
        short = block_id.hex()[:12]
        good: list[str] = []
        bad: dict[str, str] = {}
        unreachable = False
        obj: bytes | None = None
        for h in rec.pools:
            if h not in self.pools.pool_names or not self.pools.state(h).serves:
                unreachable = True
                continue
            if not deep and h not in verify:
                good.append(h)
                continue
            got, why = await self._check_copy(h, block_id, rec, out, reads)
            if got is None:
                bad[h] = why
            else:
                good.append(h)
                obj = obj or got
        placed = [h for h in good if self.pools.state(h).places]
        if len(placed) >= self.pools.replicas:
            with self.meta.write() as t:
                t.delete("deficit", block_id)
            return
        for h in good if obj is None else ():
            obj, why = await self.copies.read_copy(h, block_id, rec.digest, place)
            if obj is not None:
                break
            bad[h] = why
        if obj is None:
            out.complete = False
            out.unrecoverable = not unreachable
            log.error("block %s: no good copy in pack %s to write it out from; tried: %s", short, place[0],
                      ", ".join(f"{n} ({why})" for n, why in bad.items()) or "no holder serves")  # fmt: skip
            return
        targets = self.pools.targets(block_id)
        stored: list[str] = []
        for name in targets:
            if not self.pools.state(name).takes_blocks:
                continue
            await self.rate.take(len(obj))
            try:
                await self.copies.put_copy(name, block_id, obj)
            except StorageError as exc:
                log.warning("cannot write block %s out of its pack to pool %s: %s", short, name, exc)
                continue
            stored.append(name)
        out.repaired += len(stored)
        out.moved += len(stored)
        out.complete = set(stored) == set(targets)
        if not stored:
            return
        with self.meta.write() as t:
            now = t.block_record(block_id)
            if now is None or now.in_pack != place[0]:
                return
            packs.released(t, now.in_pack, now.stored_size)
            now.pools = tuple(n for n in self.pools.ranked(block_id) if n in stored)
            now.in_pack, now.offset = "", 0
            t.put_block_record(block_id, now)
            if out.complete:
                t.delete("deficit", block_id)
            else:
                t.put("deficit", block_id, b"")
        why = ", ".join(f"{n} {w}" for n, w in bad.items()) or f"{len(placed)} of {self.pools.replicas} copies placed"
        log.info("block %s written out of pack %s to %s (%s)", short, place[0], ", ".join(stored), why)

    async def _good_object(
        self, block_id: bytes, digest: bytes, good: set[str], bad: dict[str, str]
    ) -> bytes | None:
        """A verified copy from a holder thought good; holders found bad move to `bad`."""
        for name in [n for n in self.pools.ranked(block_id) if n in good]:
            got, why = await self.copies.read_copy(name, block_id, digest)
            if got is not None:
                return got
            good.discard(name)
            bad[name] = why
        return None

    async def repair_pending(self) -> int:
        """One pass over the deficit list; returns how many blocks are complete now."""
        with self.meta.read() as t:
            pending = {k: frozenset(_marks(v)) for k, v in t.scan("deficit", b"")}
        done = moved = rewritten = 0
        limiter = trio.CapacityLimiter(self.concurrency)

        async def one(block_id: bytes) -> None:
            nonlocal done, moved, rewritten
            async with limiter:
                try:
                    out = await self.repair_block(block_id, listed=True, verify=pending[block_id])
                except StorageError as exc:
                    log.warning("repair of block %s failed, will retry: %s", block_id.hex()[:12], exc)
                    return
            done += out.complete
            moved += out.moved
            rewritten += out.repaired - out.moved

        ids = list(pending)
        for i in range(0, len(ids), BATCH):
            async with trio.open_nursery() as nursery:
                for block_id in ids[i : i + BATCH]:
                    nursery.start_soon(one, block_id)
        if pending:
            log.info(
                "repair pass: %d of %d blocks are complete now (%d copies placed on new pools, %d damaged or "
                "missing copies rewritten)",
                done,
                len(pending),
                moved,
                rewritten,
            )
        return done

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: work off the deficit when woken and every `interval` seconds."""
        task_status.started()
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.repair_pending()

