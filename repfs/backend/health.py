"""Pool health: a heartbeat per pool that keeps the store's availability flags true.

Every `interval` seconds each pool is pinged and its superblock checked:
- a pool that misses `down_after` heartbeats in a row is marked unusable (`down`);
  when it answers again it is usable again (`up`). Verification of a returning pool
  by digest challenge is a later step (see docs/OPERATIONS.md).
- a pool whose superblock vanished (its contents were wiped while mounted) gets it
  back, so that the pool stays recognisable at the next mount; read repair and scrub
  bring its blocks back.
- a pool whose superblock now belongs to another filesystem is marked unusable and
  logged as `failed`: repfs never writes into another filesystem's pool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum

import trio

from repfs.backend.base import Pool
from repfs.backend.keys import SUPERBLOCK_KEY
from repfs.backend.replicated import ReplicatedStore
from repfs.codec.superblock import Superblock
from repfs.errors import CorruptObject, ObjectNotFound, StorageError

log = logging.getLogger(__name__)


class PoolState(Enum):
    UP = "up"
    DOWN = "down"
    FAILED = "failed"


class HealthMonitor:
    def __init__(
        self,
        store: ReplicatedStore,
        pools: Mapping[str, Pool],
        superblock: Superblock,
        *,
        interval: float = 10.0,
        down_after: int = 3,
        on_wiped: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.pools = dict(pools)
        self.superblock = superblock
        self.interval = interval
        self.down_after = down_after
        self.state = dict.fromkeys(self.pools, PoolState.UP)
        self.missed = dict.fromkeys(self.pools, 0)
        self.on_wiped = on_wiped
        self._nursery: trio.Nursery | None = None

    def _set(self, name: str, state: PoolState, why: str) -> None:
        if self.state[name] != state:
            log.warning("pool %s is now %s: %s", name, state.value, why)
            self.state[name] = state
        self.store.set_pool_state(name, state == PoolState.UP)

    async def check(self, name: str) -> None:
        pool = self.pools[name]
        try:
            await pool.ping()
            try:
                sb = Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
            except ObjectNotFound:
                log.warning("pool %s lost its superblock; writing it again and restoring its blocks", name)
                await pool.put(SUPERBLOCK_KEY, self.superblock.to_bytes())
                sb = self.superblock
                if self.on_wiped is not None and self._nursery is not None:
                    self._nursery.start_soon(self.on_wiped, name)
        except CorruptObject as exc:
            self._set(name, PoolState.FAILED, f"unreadable superblock: {exc}")
            return
        except StorageError as exc:
            self.missed[name] += 1
            if self.missed[name] >= self.down_after:
                self._set(name, PoolState.DOWN, f"{self.missed[name]} missed heartbeats: {exc}")
            return
        self.missed[name] = 0
        if sb.fs_uuid != self.superblock.fs_uuid:
            self._set(name, PoolState.FAILED, f"it now belongs to filesystem {sb.fs_uuid}")
            return
        if self.state[name] == PoolState.DOWN:
            self._set(name, PoolState.UP, "it answers again")

    async def check_all(self) -> None:
        async with trio.open_nursery() as n:
            for name in self.pools:
                n.start_soon(self.check, name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(self.interval)  # the heartbeat period, not synchronisation
                await self.check_all()
