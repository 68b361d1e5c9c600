"""Pool usage, measured in the background.

`Pool.usage()` can be expensive (an S3 pool lists every object it holds), so it is never
called on a request path: this service measures every pool that serves each `interval`
seconds (one pool at a time, so that a slow listing delays nothing else) and hands the
figures to the pool set, which keeps them up to date from the writes in between, checks
them against each pool's thresholds and logs a crossing (see `PoolSet.space`).
`refresh()` asks for a measurement now (after an administrator changed a capacity).
"""

from __future__ import annotations

import logging
import time

import trio

from repfs.backend.poolset import PoolSet
from repfs.errors import StorageError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
MEASURE_TIMEOUT = 300.0


class UsageMonitor:
    def __init__(self, pools: PoolSet, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.pools = pools
        self.interval = interval
        self.measured: dict[str, float] = {}  # pool -> unix time of its last measurement
        self.passes = 0
        self._wake = trio.Event()
        self._done = trio.Event()
        self._measuring = False

    def refresh(self) -> None:
        """Measure every pool now rather than at the next interval."""
        self._wake.set()

    async def measure_now(self) -> None:
        """Ask for a measurement and wait until a whole pass begun after this call is done."""
        passes = 2 if self._measuring else 1
        self.refresh()
        for _ in range(passes):
            await self._done.wait()

    async def measure(self, name: str) -> bool:
        """Measure one pool; False when it could not be measured."""
        pool = self.pools.pool(name)
        try:
            with trio.fail_after(MEASURE_TIMEOUT):
                u = await pool.usage()
        except (StorageError, trio.TooSlowError) as exc:
            log.info("cannot measure the usage of pool %s: %s", name, exc or "timed out")
            return False
        self.pools.note_usage(name, u.used, u.total, u.free)
        self.measured[name] = time.time()
        return True

    async def measure_all(self) -> None:
        for name in self.pools.pool_names:
            if name in self.pools.pool_names and self.pools.usable(name):
                await self.measure(name)
        self.passes += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: measure at start, then every `interval` seconds or when asked."""
        task_status.started()
        while True:
            self._wake = trio.Event()
            self._measuring = True
            try:
                await self.measure_all()
            finally:
                self._measuring = False
            done, self._done = self._done, trio.Event()
            done.set()
            with trio.move_on_after(self.interval):
                await self._wake.wait()
