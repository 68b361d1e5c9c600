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

Availability is a flag per pool (`set_pool_state`), driven by the health monitor: a pool
marked unusable gets no reads and no writes. Log lines and errors name the pool and the
block id (its first 12 hex digits), never object contents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import trio

from repfs.backend.base import Pool, PoolUsage
from repfs.backend.keys import block_key
from repfs.backend.placement import rank_pools
from repfs.backend.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, retry
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
        self._usable = dict.fromkeys(pools, True)
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

    def set_pool_state(self, name: str, usable: bool) -> None:
        self._check_name(name)
        if self._usable[name] != usable:
            log.info("pool %s is now %s", name, "usable" if usable else "unusable")
        self._usable[name] = usable

    def usable(self, name: str) -> bool:
        self._check_name(name)
        return self._usable[name]

    def _check_name(self, name: str) -> None:
        if name not in self._pools:
            raise ValueError(f"no pool named {name!r}; pools are {sorted(self._pools)}")

    async def _call(self, name: str, what: str, op: Callable[[Pool], Awaitable[T]]) -> T:
        """`op(pool)` with retries of PoolUnavailable, bounded by `op_timeout` in all."""
        pool = self._pools[name]
        timeout = self._op_timeout if self._op_timeout is not None else math.inf
        deadline = trio.current_time() + timeout
        with trio.move_on_at(deadline):
            return await retry(
                lambda: op(pool),
                attempts=self._attempts,
                base_delay=self._base_delay,
                deadline=deadline,
                is_transient=_is_transient,
            )
        raise PoolUnavailable(f"pool {name}: {what} timed out after {timeout:g} s")

    # --- blocks -----------------------------------------------------------------------

    async def put_block(self, block_id: bytes, obj: bytes) -> list[str]:
        """Store `obj` on up to `replicas` pools; return the pools that hold it, in rank order.

        Raises NoSpace if fewer than `write_quorum` pools stored it and every pool that
        failed was full, QuorumNotReached otherwise.
        """
        key = block_key(block_id)
        ranked = self.ranked(block_id)
        candidates: Iterator[str] = iter([n for n in ranked if self._usable[n]])
        stored: set[str] = set()
        failures: dict[str, Exception] = {}

        async def store(name: str | None) -> None:
            # Put on `name`; on failure, take the next candidate, until one works or none is left.
            while name is not None:
                try:
                    await self._call(name, f"put {key}", lambda pool: pool.put(key, obj))
                except StorageError as exc:
                    failures[name] = exc
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
        reasons.update({n: "marked unusable" for n in ranked if not self._usable[n]})
        msg = (
            f"block {block_id.hex()[:12]}: stored on {len(holders)} pool(s) {holders}, "
            f"write quorum is {self.write_quorum}; failed: {_summary(reasons)}"
        )
        if failures and all(isinstance(e, PoolFull) for e in failures.values()):
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
            if self._usable[name]:
                order.append(name)
            elif name in held:
                failures[name] = "marked unusable"
        to_repair: dict[str, str] = {}
        for name in order:
            try:
                obj = await self._call(name, f"get {key}", lambda pool: pool.get(key))
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
        sources = [n for n in ranked if n in set(holders) and n != target and self._usable[n]]
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
                if name not in self._pools or not self._usable[name]:
                    log.warning(
                        "cannot delete block %s from pool %s: pool is %s",
                        short,
                        name,
                        "unknown" if name not in self._pools else "marked unusable",
                    )
                    failed.append(name)
                else:
                    nursery.start_soon(delete_one, name)
        return [n for n in dict.fromkeys(holders) if n in failed]

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
                if self._usable[name]:
                    nursery.start_soon(put_one, name)
        unusable = [n for n in self._pools if not self._usable[n]]
        if not failures and not unusable:
            return
        reasons = {n: _reason(e) for n, e in failures.items()} | {n: "marked unusable" for n in unusable}
        msg = f"cannot store {key} on every pool; failed: {_summary(reasons)}"
        if not unusable and all(isinstance(e, PoolFull) for e in failures.values()):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def get_from(self, pool_name: str, key: str) -> bytes:
        """The object `key` from one pool (ObjectNotFound, PoolUnavailable as the pool says)."""
        self._check_name(pool_name)
        if not self._usable[pool_name]:
            raise PoolUnavailable(f"pool {pool_name} is marked unusable")
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
