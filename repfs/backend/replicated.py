"""`ReplicatedStore`: blocks on the pools of a `PoolSet` — quorum writes with stand-ins,
hedged failover reads, read repair.

A block's pools come from placement (`PoolSet.targets`): the first `replicas` usable pools
of its order hold it. Writes go to those pools at once; a pool that fails hands its place
to the next pool of the order (`put_ranked`, which metadata objects use too). Reads try
the recorded holders first, then every other usable pool, and put a good copy back on any
holder that had lost or garbled its own.

Pool failures are told apart like this: `PoolUnavailable` is retried a few times (inside
`PoolSet.call`), then the pool is passed over; `PoolFull` passes the pool over at once;
`ObjectNotFound` and `CorruptObject` (from `decode`) are facts about one copy.

Log lines and errors name the pool and the block id (its first 12 hex digits), never
object contents.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

import trio

from repfs.backend.base import Pool
from repfs.backend.keys import block_key
from repfs.backend.poolset import PoolSet, reason, summary
from repfs.errors import (
    CorruptObject,
    NoSpace,
    ObjectNotFound,
    PoolFull,
    QuorumNotReached,
    ReadFailed,
    StorageError,
)
from repfs.inline import INLINE_BYTES

log = logging.getLogger(__name__)


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    """Cancel `scope` once `event` is set (to wait for the first of several events)."""
    await event.wait()
    scope.cancel()


async def put_ranked(
    pools: PoolSet, key: str, obj: bytes, candidates: list[str], copies: int, what: str
) -> tuple[set[str], dict[str, Exception]]:
    """Put `obj` on the first `copies` candidates at once; each is a slot that the next
    candidate takes over. A pool that fails hands its slot over at once. A pool that
    misses its deadline (deadline.py) is suspected and hedged: the next candidate is
    asked as well and the first to store it fills the slot; the other is cancelled.
    A slow request with no candidate left to hedge it is waited for only until the
    write quorum is met elsewhere (then it becomes a deficit, never a stalled fsync).
    Returns (pools that stored it, failures)."""
    pending: Iterator[str] = iter(candidates)
    stored: set[str] = set()
    failures: dict[str, Exception] = {}
    quorum = trio.Event()  # enough copies for the write to count (write_quorum, or every slot)
    need = min(pools.write_quorum, copies)

    async def slot(first: str) -> None:
        running = 0
        changed = trio.Event()
        filled = False

        async def attempt(name: str, finished: trio.Event) -> None:
            nonlocal running, changed, filled
            try:
                # bounded by op_timeout only: this slot's deadline decides when to hedge
                await pools.call(
                    name, f"put {key}", lambda pool: pool.put(key, obj), nbytes=len(obj), limit=pools.op_timeout
                )
            except StorageError as exc:
                failures[name] = exc
                if isinstance(exc, PoolFull):
                    pools.space_book.mark_full(name, exc)
            else:
                if not filled:
                    filled = True
                    stored.add(name)
                    pools.space_book.count(name, len(obj))
                    if len(stored) >= need:
                        quorum.set()
                    nursery.cancel_scope.cancel()  # the hedge (or the slow original) is not needed
            finally:
                running -= 1
                finished.set()
                changed.set()

        async with trio.open_nursery() as nursery:
            name: str | None = first
            while name is not None:
                finished = trio.Event()
                running += 1
                nursery.start_soon(attempt, name, finished)
                wait = pools.deadline(name, len(obj))
                await pools.stalls.wait(finished, wait)
                nxt = next(pending, None)
                if finished.is_set():  # it failed (a success cancels this loop)
                    log.warning(
                        "cannot store %s on pool %s (%s); %s",
                        what,
                        name,
                        reason(failures[name]) if name in failures else "error",
                        f"trying pool {nxt}" if nxt else "no pool left to try",
                    )
                else:  # slow: suspected, and hedged by the next candidate
                    pools.suspect(name)
                    log.warning(
                        "pool %s has not stored %s within %.3g s; %s",
                        name,
                        what,
                        wait,
                        f"trying pool {nxt} as well" if nxt else "waiting for it only until the quorum is met",
                    )
                name = nxt
            # nothing left to ask: wait for what still runs, but not past the quorum
            while running and not quorum.is_set():
                changed = trio.Event()
                async with trio.open_nursery() as waiter:
                    waiter.start_soon(_set_when, changed, waiter.cancel_scope)
                    waiter.start_soon(_set_when, quorum, waiter.cancel_scope)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for _ in range(copies):
            first = next(pending, None)
            if first is None:
                break
            nursery.start_soon(slot, first)
    return stored, failures


class ReplicatedStore:
    """The block data path: put, get (hedged, with read repair) and delete of blocks."""

    def __init__(self, pools: PoolSet, *, cpu_limiter: trio.CapacityLimiter | None = None) -> None:
        self._pools = pools
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)
        self.repairs = 0  # copies put back by read repair

    async def put_block(self, block_id: bytes, obj: bytes) -> list[str]:
        """Store `obj` on up to `replicas` pools; return the pools that hold it, in rank order.

        Raises NoSpace if fewer than `write_quorum` pools stored it and every pool that
        failed was full, QuorumNotReached otherwise.
        """
        key = block_key(block_id)
        pools = self._pools
        ranked = pools.ranked(block_id)
        stored, failures = await put_ranked(
            pools, key, obj, [n for n in ranked if pools.writable(n)], pools.replicas, f"block {block_id.hex()[:12]}"
        )
        holders = [n for n in ranked if n in stored and n in pools]  # removed meanwhile: not a holder
        if len(holders) >= pools.write_quorum:
            return holders
        reasons = {n: reason(e) for n, e in failures.items()}
        reasons.update({n: pools.state(n).value for n in ranked if not pools.state(n).takes_blocks})
        reasons.update({n: "full" for n in ranked if n not in reasons and pools.full(n)})
        msg = (
            f"block {block_id.hex()[:12]}: stored on {len(holders)} pool(s) {holders}, "
            f"write quorum is {pools.write_quorum}; failed: {summary(reasons)}"
        )
        serving = [n for n in ranked if pools.state(n).takes_blocks]
        if serving and all(pools.full(n) for n in serving):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def get_block(
        self,
        block_id: bytes,
        holders: Sequence[str],
        decode: Callable[[bytes], bytes],
        *,
        size_hint: int | None = None,
        place: tuple[str, int, int] | None = None,
        on_damaged: Callable[[], None] | None = None,
    ) -> bytes:
        """The plaintext of a block: holders first, then any other usable pool, in rank order
        (suspected pools last). A block inside a pack has its `place` (the pack's key, the
        offset and length of its frame): it is read by its range from the pack's holders
        only, and a holder without a good frame is reported to `on_damaged` instead of
        repaired here (a frame cannot be put back into a pack).

        The reads are hedged: when a pool has not answered within its deadline for
        `size_hint` bytes (the stored size), the next pool is asked as well, and the first
        good answer wins; a pool that fails asks the next at once. The slow request is
        cancelled then, never waited for. `decode(obj)` turns an object into plaintext or
        raises CorruptObject; it runs in a worker thread. Holders that lacked the block or
        held a corrupt copy get the good object back (read repair). Raises ReadFailed when
        no pool has a good copy.
        """
        key = block_key(block_id) if place is None else place[0]
        short = block_id.hex()[:12]
        pools = self._pools
        ranked = pools.ranked(block_id) if place is None else pools.ranked(key.encode())
        held = set(holders)
        failures: dict[str, str] = {n: "unknown pool" for n in holders if n not in pools}
        order: list[str] = []
        others = [n for n in ranked if n not in held] if place is None else []  # a pack is where it was put
        for name in [n for n in ranked if n in held] + others:
            if pools.usable(name):
                order.append(name)
            elif name in held:
                failures[name] = pools.state(name).value
        order.sort(key=lambda n: n in pools.suspected)  # stable: rank order within each group
        to_repair: dict[str, str] = {}
        found: list[tuple[str, bytes, bytes]] = []  # (pool, object, plaintext) of the first good copy

        def read(pool: Pool) -> Awaitable[bytes]:
            return pool.get(key) if place is None else pool.get_range(key, place[1], place[2])

        async def attempt(name: str, last: bool, gave_up: trio.Event) -> None:
            try:
                # with another copy to try, fail over at once rather than retry a failing pool
                obj = await pools.call(name, f"get {key}", read, attempts=None if last else 1)
                if len(obj) <= INLINE_BYTES:
                    data = decode(obj)
                else:
                    data = await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (ObjectNotFound, CorruptObject) as exc:
                failures[name] = reason(exc)
                if name in held:
                    to_repair[name] = "missing" if isinstance(exc, ObjectNotFound) else "corrupt"
                gave_up.set()
                return
            except StorageError as exc:
                failures[name] = reason(exc)
                gave_up.set()
                return
            if not found:
                found.append((name, obj, data))
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for i, name in enumerate(order):
                gave_up = trio.Event()
                nursery.start_soon(attempt, name, i + 1 == len(order), gave_up)
                wait = pools.deadline(name, size_hint or 0)
                if i + 1 < len(order) and not await pools.stalls.wait(gave_up, wait):
                    # slow: suspected, and hedged by the next pool
                    pools.suspect(name)
                    log.info("block %s: pool %s is slow to answer; asking pool %s too", short, name, order[i + 1])
        if not found:
            raise ReadFailed(f"block {short}: no readable copy; tried: {summary(failures)}")
        name, obj, data = found[0]
        if name not in held:
            log.info("block %s found on pool %s, which is not a recorded holder", short, name)
        if to_repair and place is not None:
            log.warning("block %s: pack %s is %s on %s", short, key, "/".join(to_repair.values()), ", ".join(to_repair))
            if on_damaged is not None:
                on_damaged()
        elif to_repair:
            await self._repair(block_id, obj, to_repair)
        return data

    async def _repair(self, block_id: bytes, obj: bytes, bad: Mapping[str, str]) -> None:
        key = block_key(block_id)
        short = block_id.hex()[:12]

        async def repair_one(name: str, why: str) -> None:
            try:
                await self._pools.call(name, f"put {key}", lambda pool: pool.put(key, obj))
            except StorageError as exc:
                log.warning("cannot repair block %s on pool %s (was %s): %s", short, name, why, exc)
                return
            self._pools.space_book.count(name, len(obj))
            self.repairs += 1
            log.warning("repaired block %s on pool %s: was %s", short, name, why)

        async with trio.open_nursery() as nursery:
            for name, why in bad.items():
                nursery.start_soon(repair_one, name, why)

    async def delete_block(
        self, block_id: bytes, holders: Sequence[str], *, stored_size: int = 0, recorded: Sequence[str] = ()
    ) -> list[str]:
        """Delete a block from every holder at once; return the pools where that failed
        (unreachable, unusable or unknown: GC tries them again later). The `recorded`
        holders' usage drops by `stored_size` at once, so a pool that was past its
        critical threshold takes blocks again as soon as deletes free it, not at the next
        measurement."""
        key = block_key(block_id)
        short = block_id.hex()[:12]
        pools = self._pools
        failed: list[str] = []

        async def delete_one(name: str) -> None:
            try:
                await pools.call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)
            except StorageError as exc:
                log.warning("cannot delete block %s from pool %s: %s", short, name, exc)
                failed.append(name)
            else:
                if name in recorded and stored_size:
                    pools.space_book.count(name, -stored_size)

        async with trio.open_nursery() as nursery:
            for name in dict.fromkeys(holders):
                if name not in pools or not pools.usable(name):
                    log.warning(
                        "cannot delete block %s from pool %s: pool is %s",
                        short,
                        name,
                        "unknown" if name not in pools else pools.state(name).value,
                    )
                    failed.append(name)
                else:
                    nursery.start_soon(delete_one, name)
        return [n for n in dict.fromkeys(holders) if n in failed]

