"""`ReplicatedStore`: blocks on several pools — placement, quorum writes, failover reads,
read repair.

A block's pools come from `placement.rank_pools`: the first `replicas` usable pools of its
order hold it. Writes go to those pools at once; a pool that fails hands its place to the
next pool of the order. Reads try the recorded holders first, then every other usable
pool, and put a good copy back on any holder that had lost or garbled its own.

Pool failures are told apart like this: `PoolUnavailable` is retried a few times (see
`retry`), then the pool is passed over; `PoolFull` passes the pool over at once;
`ObjectNotFound` and `CorruptObject` (from `decode`) are facts about one copy. A pool call
that takes longer than `op_timeout` seconds counts as `PoolUnavailable`.

Each pool has a `PoolState` (see state.py), driven by the health monitor: only an `up`
pool gets reads and writes. A pool that reports itself full (or whose configured
capacity is used up) takes no new blocks for a while but still serves reads. A pool call
that fails as unavailable is reported through `on_trouble`, so the health monitor looks
at that pool at once instead of at its next heartbeat. Log lines and errors name the
pool and the block id (its first 12 hex digits), never object contents.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import trio

from repfs.backend.base import Pool, PoolUsage
from repfs.backend.keys import block_key
from repfs.backend.placement import rank_pools
from repfs.backend.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, retry
from repfs.backend.state import PoolState, object_digest
from repfs.errors import (
    CorruptObject,
    NoSpace,
    ObjectNotFound,
    PoolFull,
    PoolUnavailable,
    QuorumNotReached,
    ReadFailed,
    StorageError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OP_TIMEOUT = 60.0
FULL_BACKOFF = 60.0  # seconds a pool that said "full" gets no new blocks before it is tried again


def _is_transient(exc: Exception) -> bool:
    return isinstance(exc, PoolUnavailable)


_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (CorruptObject, "corrupt"),
    (PoolFull, "full"),
    (PoolUnavailable, "unavailable"),
)


def _reason(exc: Exception) -> str:
    """Why one pool failed: a word, then the pool's own message (never object contents)."""
    if isinstance(exc, ObjectNotFound):
        return "missing"
    kind = next((word for cls, word in _KINDS if isinstance(exc, cls)), type(exc).__name__)
    return f"{kind}: {exc}"


def _summary(failures: Mapping[str, str]) -> str:
    return "; ".join(f"{name} ({why})" for name, why in failures.items()) or "none"


class ReplicatedStore:
    def __init__(
        self,
        pools: Mapping[str, Pool],
        weights: Mapping[str, float],
        *,
        replicas: int,
        write_quorum: int,
        cpu_limiter: trio.CapacityLimiter | None = None,
        op_timeout: float | None = DEFAULT_OP_TIMEOUT,
        retry_attempts: int = DEFAULT_ATTEMPTS,
        retry_base_delay: float = DEFAULT_BASE_DELAY,
        capacities: Mapping[str, int] | None = None,
    ) -> None:
        if set(pools) != set(weights):
            raise ValueError(f"pools {sorted(pools)} and weights {sorted(weights)} name different pools")
        for name, pool in pools.items():
            if pool.name != name:
                raise ValueError(f"pool {pool.name} is registered under another name, {name}")
        if not 1 <= write_quorum <= replicas:
            raise ValueError(f"need 1 <= write_quorum ({write_quorum}) <= replicas ({replicas})")
        self._pools = dict(pools)
        self._weights = [(name, float(weights[name])) for name in pools]
        rank_pools(b"", self._weights)  # validates the weights now rather than on first use
        self.replicas = replicas
        self.write_quorum = write_quorum
        self._state = dict.fromkeys(pools, PoolState.UP)
        self._full_until = dict.fromkeys(pools, 0.0)
        self._capacity = {n: int((capacities or {}).get(n, 0)) for n in pools}
        self._used: dict[str, int | None] = dict.fromkeys(pools)
        self.on_trouble: Callable[[str], None] | None = None
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)
        self._op_timeout = op_timeout
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay
        self.repairs = 0

    # --- pools and their state ------------------------------------------------------

    @property
    def pool_names(self) -> list[str]:
        return list(self._pools)

    def ranked(self, block_id: bytes) -> list[str]:
        """Every pool, in the placement (and read priority) order of `block_id`."""
        return rank_pools(block_id, self._weights)

    def targets(self, block_id: bytes) -> list[str]:
        """The pools that should hold `block_id`: the first `replicas` of its order that
        keep a place in placement (a down pool keeps its place; a failed one does not)."""
        return [n for n in self.ranked(block_id) if self._state[n].places][: self.replicas]

    def set_state(self, name: str, state: PoolState, why: str = "") -> None:
        self._check_name(name)
        if self._state[name] != state:
            log.warning("pool %s is now %s%s", name, state.value, f": {why}" if why else "")
        self._state[name] = state

    def state(self, name: str) -> PoolState:
        self._check_name(name)
        return self._state[name]

    def usable(self, name: str) -> bool:
        """Whether `name` serves reads and writes now."""
        self._check_name(name)
        return self._state[name].serves

    # --- space ------------------------------------------------------------------------

    def full(self, name: str) -> bool:
        """Whether `name` takes no new blocks now: it said so lately, or its capacity is used."""
        if time.monotonic() < self._full_until[name]:
            return True
        used, cap = self._used[name], self._capacity[name]
        return cap > 0 and used is not None and used >= cap

    def writable(self, name: str) -> bool:
        return self.usable(name) and not self.full(name)

    def no_space(self) -> bool:
        """Whether no pool that serves could take a new block (writes then get ENOSPC)."""
        serving = [n for n in self._pools if self._state[n].serves]
        return bool(serving) and all(self.full(n) for n in serving)

    def note_usage(self, name: str, used: int) -> None:
        """The bytes a pool holds, as measured (the store keeps it up to date from there)."""
        self._used[name] = used

    def _mark_full(self, name: str, exc: Exception) -> None:
        if not self.full(name):
            log.warning("pool %s is full and takes no new blocks for %g s: %s", name, FULL_BACKOFF, exc)
        self._full_until[name] = time.monotonic() + FULL_BACKOFF

    def _count(self, name: str, delta: int) -> None:
        used = self._used[name]
        if used is not None:
            self._used[name] = max(0, used + delta)

    def _check_name(self, name: str) -> None:
        if name not in self._pools:
            raise ValueError(f"no pool named {name!r}; pools are {sorted(self._pools)}")

    async def _call(
        self, name: str, what: str, op: Callable[[Pool], Awaitable[T]], *, attempts: int | None = None
    ) -> T:
        """`op(pool)` with retries of PoolUnavailable, bounded by `op_timeout` in all."""
        pool = self._pools[name]
        timeout = self._op_timeout if self._op_timeout is not None else math.inf
        deadline = trio.current_time() + timeout
        try:
            with trio.move_on_at(deadline):
                return await retry(
                    lambda: op(pool),
                    attempts=attempts or self._attempts,
                    base_delay=self._base_delay,
                    deadline=deadline,
                    is_transient=_is_transient,
                )
            raise PoolUnavailable(f"pool {name}: {what} timed out after {timeout:g} s")
        except PoolUnavailable:
            if self.on_trouble is not None:
                self.on_trouble(name)
            raise

    # --- blocks -----------------------------------------------------------------------

    async def put_block(self, block_id: bytes, obj: bytes) -> list[str]:
        """Store `obj` on up to `replicas` pools; return the pools that hold it, in rank order.

        Raises NoSpace if fewer than `write_quorum` pools stored it and every pool that
        failed was full, QuorumNotReached otherwise.
        """
        key = block_key(block_id)
        ranked = self.ranked(block_id)
        candidates: Iterator[str] = iter([n for n in ranked if self.writable(n)])
        stored: set[str] = set()
        failures: dict[str, Exception] = {}

        async def store(name: str | None) -> None:
            # Put on `name`; on failure, take the next candidate, until one works or none is left.
            while name is not None:
                try:
                    await self._call(name, f"put {key}", lambda pool: pool.put(key, obj))
                except StorageError as exc:
                    failures[name] = exc
                    if isinstance(exc, PoolFull):
                        self._mark_full(name, exc)
                    stand_in = next(candidates, None)
                    log.warning(
                        "cannot store block %s on pool %s (%s); %s",
                        block_id.hex()[:12],
                        name,
                        _reason(exc),
                        f"trying pool {stand_in}" if stand_in else "no pool left to try",
                    )
                    name = stand_in
                else:
                    stored.add(name)
                    self._count(name, len(obj))
                    return

        async with trio.open_nursery() as nursery:
            for _ in range(self.replicas):
                first = next(candidates, None)
                if first is None:
                    break
                nursery.start_soon(store, first)

        holders = [n for n in ranked if n in stored]
        if len(holders) >= self.write_quorum:
            return holders
        reasons = {n: _reason(e) for n, e in failures.items()}
        reasons.update({n: self._state[n].value for n in ranked if not self._state[n].serves})
        reasons.update({n: "full" for n in ranked if n not in reasons and self.full(n)})
        msg = (
            f"block {block_id.hex()[:12]}: stored on {len(holders)} pool(s) {holders}, "
            f"write quorum is {self.write_quorum}; failed: {_summary(reasons)}"
        )
        serving = [n for n in ranked if self._state[n].serves]
        if serving and all(self.full(n) for n in serving):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def get_block(
        self, block_id: bytes, holders: Sequence[str], decode: Callable[[bytes], bytes]
    ) -> bytes:
        """The plaintext of a block: holders first, then any other usable pool, in rank order.

        `decode(obj)` turns an object into plaintext or raises CorruptObject; it runs in a
        worker thread. Holders that lacked the block or held a corrupt copy get the good
        object back (read repair). Raises ReadFailed when no pool has a good copy.
        """
        key = block_key(block_id)
        short = block_id.hex()[:12]
        ranked = self.ranked(block_id)
        held = set(holders)
        failures: dict[str, str] = {n: "unknown pool" for n in holders if n not in self._pools}
        order: list[str] = []
        for name in [n for n in ranked if n in held] + [n for n in ranked if n not in held]:
            if self._state[name].serves:
                order.append(name)
            elif name in held:
                failures[name] = self._state[name].value
        to_repair: dict[str, str] = {}
        for i, name in enumerate(order):
            # with another copy to try, fail over at once rather than retry a pool that fails
            attempts = 1 if i + 1 < len(order) else None
            try:
                obj = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=attempts)
                data = await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (ObjectNotFound, CorruptObject) as exc:
                failures[name] = _reason(exc)
                if name in held:
                    to_repair[name] = "missing" if isinstance(exc, ObjectNotFound) else "corrupt"
                continue
            except StorageError as exc:
                failures[name] = _reason(exc)
                continue
            if name not in held:
                log.info("block %s found on pool %s, which is not a recorded holder", short, name)
            if to_repair:
                await self._repair(block_id, obj, to_repair)
            return data
        raise ReadFailed(f"block {short}: no readable copy; tried: {_summary(failures)}")

    async def restore_copy(
        self, block_id: bytes, target: str, holders: Sequence[str], decode: Callable[[bytes], bytes]
    ) -> bool:
        """Put a verified copy of a block back on `target` if it lost it; True if it did."""
        key = block_key(block_id)
        if await self._call(target, f"check {key}", lambda pool: pool.exists(key)):
            return False
        ranked = self.ranked(block_id)
        sources = [n for n in ranked if n in set(holders) and n != target and self._state[n].serves]
        for name in sources:
            try:
                obj = await self._call(name, f"get {key}", lambda pool: pool.get(key))
                await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (ObjectNotFound, CorruptObject, StorageError):
                continue
            await self._repair(block_id, obj, {target: "missing"})
            return True
        raise ReadFailed(f"block {block_id.hex()[:12]}: no good copy to restore on pool {target}")

    async def _repair(self, block_id: bytes, obj: bytes, bad: Mapping[str, str]) -> None:
        key = block_key(block_id)
        short = block_id.hex()[:12]

        async def repair_one(name: str, why: str) -> None:
            try:
                await self._call(name, f"put {key}", lambda pool: pool.put(key, obj))
            except StorageError as exc:
                log.warning("cannot repair block %s on pool %s (was %s): %s", short, name, why, exc)
                return
            self._count(name, len(obj))
            self.repairs += 1
            log.warning("repaired block %s on pool %s: was %s", short, name, why)

        async with trio.open_nursery() as nursery:
            for name, why in bad.items():
                nursery.start_soon(repair_one, name, why)

    async def delete_block(self, block_id: bytes, holders: Sequence[str]) -> list[str]:
        """Delete a block from every holder at once; return the pools where that failed
        (unreachable, unusable or unknown: GC tries them again later)."""
        key = block_key(block_id)
        short = block_id.hex()[:12]
        failed: list[str] = []

        async def delete_one(name: str) -> None:
            try:
                await self._call(name, f"delete {key}", lambda pool: pool.delete(key))
            except StorageError as exc:
                log.warning("cannot delete block %s from pool %s: %s", short, name, exc)
                failed.append(name)

        async with trio.open_nursery() as nursery:
            for name in dict.fromkeys(holders):
                if name not in self._pools or not self._state[name].serves:
                    log.warning(
                        "cannot delete block %s from pool %s: pool is %s",
                        short,
                        name,
                        "unknown" if name not in self._pools else self._state[name].value,
                    )
                    failed.append(name)
                else:
                    nursery.start_soon(delete_one, name)
        return [n for n in dict.fromkeys(holders) if n in failed]

    # --- single copies: challenges, repair, scrub -----------------------------------------

    async def read_copy(self, name: str, block_id: bytes, digest: bytes) -> tuple[bytes | None, str]:
        """One pool's copy of a block, checked against `digest`: (object, "") when good,
        (None, why) when missing, damaged or unreadable. Works in any pool state, so that
        a pool being verified can be challenged."""
        self._check_name(name)
        key = block_key(block_id)
        try:
            obj = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=1)
        except ObjectNotFound:
            return None, "missing"
        except StorageError as exc:
            return None, _reason(exc)
        got = await trio.to_thread.run_sync(object_digest, obj, limiter=self._cpu_limiter)
        if got != digest:
            return None, "corrupt: digest mismatch"
        return obj, ""

    async def put_copy(self, name: str, block_id: bytes, obj: bytes) -> None:
        """Store one copy of a block on `name` (repair and rebalance); raises StorageError."""
        key = block_key(block_id)
        try:
            await self._call(name, f"put {key}", lambda pool: pool.put(key, obj))
        except PoolFull as exc:
            self._mark_full(name, exc)
            raise
        self._count(name, len(obj))

    async def delete_copy(self, name: str, block_id: bytes) -> None:
        """Delete one pool's copy of a block (an extra copy after repair); raises StorageError."""
        key = block_key(block_id)
        await self._call(name, f"delete {key}", lambda pool: pool.delete(key))

    # --- small metadata objects (superblock, ...) --------------------------------------

    async def put_all(self, key: str, data: bytes) -> None:
        """Store `data` under `key` on every pool at once; raise unless all of them took it
        (NoSpace if every failure was a full pool, QuorumNotReached otherwise)."""
        failures: dict[str, Exception] = {}

        async def put_one(name: str) -> None:
            try:
                await self._call(name, f"put {key}", lambda pool: pool.put(key, data))
            except StorageError as exc:
                failures[name] = exc

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                if self._state[name].serves:
                    nursery.start_soon(put_one, name)
        unusable = [n for n in self._pools if not self._state[n].serves]
        if not failures and not unusable:
            return
        reasons = {n: _reason(e) for n, e in failures.items()} | {n: self._state[n].value for n in unusable}
        msg = f"cannot store {key} on every pool; failed: {_summary(reasons)}"
        if not unusable and all(isinstance(e, PoolFull) for e in failures.values()):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def put_meta(self, key: str, data: bytes) -> list[str]:
        """Store a metadata object (journal segment, snapshot) on every pool that serves, at
        once; return the pools that took it. Raises QuorumNotReached (NoSpace if they
        were all full) when fewer than `write_quorum` did."""
        stored: list[str] = []
        failures: dict[str, Exception] = {}

        async def put_one(name: str) -> None:
            try:
                await self._call(name, f"put {key}", lambda pool: pool.put(key, data))
                stored.append(name)
            except StorageError as exc:
                failures[name] = exc

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                if self._state[name].serves:
                    nursery.start_soon(put_one, name)
        if len(stored) >= self.write_quorum:
            return [n for n in self._pools if n in stored]
        reasons = {n: _reason(e) for n, e in failures.items()}
        reasons |= {n: self._state[n].value for n in self._pools if not self._state[n].serves}
        msg = (
            f"{key}: stored on {len(stored)} pool(s), write quorum is {self.write_quorum}; "
            f"failed: {_summary(reasons)}"
        )
        if failures and all(isinstance(e, PoolFull) for e in failures.values()):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def list_meta(self, prefix: str, *, every_pool: bool = False) -> dict[str, list[str]]:
        """Metadata object keys under `prefix` on the pools that serve (or on every pool that
        answers, when `every_pool`), each with the pools that hold it."""
        found: dict[str, list[str]] = {}

        async def list_one(name: str) -> None:
            async def keys(pool: Pool) -> list[str]:
                return [k async for k in pool.list(prefix)]

            try:
                for key in await self._call(name, f"list {prefix}", keys):
                    found.setdefault(key, []).append(name)
            except StorageError as exc:
                log.warning("cannot list %s on pool %s: %s", prefix, name, exc)

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                if every_pool or self._state[name].serves:
                    nursery.start_soon(list_one, name)
        return {k: [n for n in self._pools if n in pools] for k, pools in found.items()}

    async def get_meta(self, key: str, holders: Sequence[str], decode: Callable[[bytes], T]) -> T:
        """`decode` of the first copy of `key` that decodes, trying `holders` in order (in any
        pool state: recovery reads whatever answers). Raises ReadFailed naming each try."""
        failures: dict[str, str] = {}
        for name in holders:
            try:
                obj = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=1)
                return await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (StorageError, CorruptObject) as exc:
                failures[name] = _reason(exc)
                if isinstance(exc, CorruptObject):
                    log.warning("%s on pool %s is damaged: %s", key, name, exc)
        raise ReadFailed(f"{key}: no readable copy; tried: {_summary(failures)}")

    async def get_meta_each(self, key: str) -> dict[str, bytes]:
        """The object `key` from every pool that answers and has it, by pool name."""
        found: dict[str, bytes] = {}

        async def get_one(name: str) -> None:
            try:
                found[name] = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=1)
            except StorageError:
                pass

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                nursery.start_soon(get_one, name)
        return found

    async def delete_meta(self, key: str, holders: Sequence[str]) -> None:
        """Delete a metadata object from the pools that hold it (best effort: logged)."""

        async def delete_one(name: str) -> None:
            try:
                await self._call(name, f"delete {key}", lambda pool: pool.delete(key))
            except StorageError as exc:
                log.warning("cannot delete %s from pool %s: %s", key, name, exc)

        async with trio.open_nursery() as nursery:
            for name in holders:
                if name in self._pools and self._state[name].serves:
                    nursery.start_soon(delete_one, name)

    async def get_from(self, pool_name: str, key: str) -> bytes:
        """The object `key` from one pool (ObjectNotFound, PoolUnavailable as the pool says)."""
        self._check_name(pool_name)
        if not self._state[pool_name].serves:
            raise PoolUnavailable(f"pool {pool_name} is {self._state[pool_name].value}")
        return await self._call(pool_name, f"get {key}", lambda pool: pool.get(key))

    # --- the rest ------------------------------------------------------------------------

    async def usage(self) -> dict[str, PoolUsage]:
        """Usage of every pool that answers, by pool name."""
        result: dict[str, PoolUsage] = {}

        async def one(name: str) -> None:
            try:
                result[name] = await self._call(name, "usage", lambda pool: pool.usage())
            except StorageError as exc:
                log.debug("no usage from pool %s: %s", name, exc)

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                nursery.start_soon(one, name)
        return {n: result[n] for n in self._pools if n in result}

    async def close(self) -> None:
        async def close_one(pool: Pool) -> None:
            try:
                await pool.close()
            except (StorageError, OSError) as exc:
                log.warning("error closing pool %s: %s", pool.name, exc)

        async with trio.open_nursery() as nursery:
            for pool in self._pools.values():
                nursery.start_soon(close_one, pool)
