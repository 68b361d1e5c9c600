"""`MetaObjects`: the small metadata objects on the pools — journal segments, snapshots,
the lease, the superblock — stored on several pools (or all), listed and read back from
whichever pools answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from repfs.backend.base import Pool
from repfs.backend.poolset import PoolSet, reason, summary
from repfs.backend.replicated import put_ranked
from repfs.backend.state import PoolState
from repfs.errors import (
    CorruptObject,
    MetaNoSpace,
    PoolFull,
    PoolUnavailable,
    QuorumNotReached,
    ReadFailed,
    StorageError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

LIST_DEADLINE = 10.0  # seconds a listing of metadata objects may take at least


class MetaObjects:
    def __init__(self, pools: PoolSet, *, cpu_limiter: trio.CapacityLimiter | None = None) -> None:
        self._pools = pools
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)

    async def put_meta(self, key: str, data: bytes, *, copies: int | None = None) -> list[str]:
        """Store a metadata object (journal segment, snapshot, lease) at once on `copies`
        pools that serve, chosen by rendezvous hashing of its key (stand-ins for those that
        fail), or on every pool that serves when `copies` is None (a draining one too:
        metadata is read back from every pool). Returns the pools that took it; raises
        QuorumNotReached (MetaNoSpace if they were all full) when fewer than `write_quorum` did."""
        pools = self._pools
        serving = [n for n in pools.ranked(key.encode()) if pools.usable(n)]
        stored, failures = await put_ranked(
            pools, key, data, serving, len(serving) if copies is None else copies, key
        )
        if len(stored) >= pools.write_quorum:
            return [n for n in pools.pool_names if n in stored]
        reasons = {n: reason(e) for n, e in failures.items()}
        reasons |= {n: pools.state(n).value for n in pools.pool_names if not pools.usable(n)}
        msg = (
            f"{key}: stored on {len(stored)} pool(s), write quorum is {pools.write_quorum}; "
            f"failed: {summary(reasons)}"
        )
        if failures and all(isinstance(e, PoolFull) for e in failures.values()):
            raise MetaNoSpace(msg)
        raise QuorumNotReached(msg)

    async def list_meta(self, prefix: str, *, every_pool: bool = False) -> dict[str, list[str]]:
        """Metadata object keys under `prefix` on the pools that serve (or on every pool that
        answers and is not offline, when `every_pool`), each with the pools that hold it."""
        pools = self._pools
        found: dict[str, list[str]] = {}

        async def list_one(name: str) -> None:
            async def keys(pool: Pool) -> list[str]:
                return [k async for k in pool.list(prefix)]

            try:
                # a listing's size is unknown: a generous multiple of the pool's deadline,
                # but a suspected pool (it just missed one) gets no more than a small request
                deadline = pools.deadline(name)
                limit = deadline if name in pools.suspected else max(LIST_DEADLINE, 20 * deadline)
                for key in await pools.call(name, f"list {prefix}", keys, limit=limit):
                    found.setdefault(key, []).append(name)
            except StorageError as exc:
                log.warning("cannot list %s on pool %s: %s", prefix, name, exc)

        async with trio.open_nursery() as nursery:
            for name in pools.pool_names:
                if pools.usable(name) or (every_pool and pools.state(name) != PoolState.OFFLINE):
                    nursery.start_soon(list_one, name)
        return {k: [n for n in pools.pool_names if n in holders] for k, holders in found.items()}

    async def get_meta(self, key: str, holders: Sequence[str], decode: Callable[[bytes], T]) -> T:
        """`decode` of the first copy of `key` that decodes, trying `holders` in order (in any
        pool state: recovery reads whatever answers). Raises ReadFailed naming each try."""
        failures: dict[str, str] = {}
        for name in holders:
            try:
                obj = await self._pools.call(name, f"get {key}", lambda pool: pool.get(key), attempts=1)
                return await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (StorageError, CorruptObject) as exc:
                failures[name] = reason(exc)
                if isinstance(exc, CorruptObject):
                    log.warning("%s on pool %s is damaged: %s", key, name, exc)
        raise ReadFailed(f"{key}: no readable copy; tried: {summary(failures)}")

    async def get_meta_each(self, key: str) -> dict[str, bytes]:
        """The object `key` from every pool that answers and has it, by pool name."""
        found: dict[str, bytes] = {}

        pools = self._pools

        async def get_one(name: str) -> None:
            # small objects (the lease): a pool that hangs misses a short deadline
            with contextlib.suppress(StorageError):
                found[name] = await pools.call(name, f"get {key}", lambda pool: pool.get(key), attempts=1, nbytes=0)

        async with trio.open_nursery() as nursery:
            for name in pools.pool_names:
                if pools.state(name) != PoolState.OFFLINE:  # an administrator's: no traffic
                    nursery.start_soon(get_one, name)
        return found

    async def delete_meta(self, key: str, holders: Sequence[str]) -> None:
        """Delete a metadata object from the pools that hold it (best effort: logged)."""

        async def delete_one(name: str) -> None:
            try:
                await self._pools.call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)
            except StorageError as exc:
                log.warning("cannot delete %s from pool %s: %s", key, name, exc)

        async with trio.open_nursery() as nursery:
            for name in holders:
                if name in self._pools and self._pools.usable(name):
                    nursery.start_soon(delete_one, name)

    async def get_from(self, pool_name: str, key: str) -> bytes:
        """The object `key` from one pool (ObjectNotFound, PoolUnavailable as the pool says)."""
        self._pools.check_name(pool_name)
        if not self._pools.usable(pool_name):
            raise PoolUnavailable(f"pool {pool_name} is {self._pools.state(pool_name).value}")
        return await self._pools.call(pool_name, f"get {key}", lambda pool: pool.get(key))
