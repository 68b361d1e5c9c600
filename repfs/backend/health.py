"""Pool health: heartbeats, and digest challenges for pools that come back.

Each pool is watched by its own heartbeat loop (every `interval` seconds; every
`quick_interval` seconds while it is missing heartbeats or a request to it just failed,
so that a stopped server is taken out of use within seconds):

- a pool that misses `down_after` heartbeats in a row is `down`: no reads, no writes;
- a `down` pool that answers again is `verifying`: a challenge of blocks it should hold
  (`sample` of them, or all) is fetched and each object's digest compared with the one
  recorded at write time. Every block good: `up`. One missing or different object, or a
  challenge that does not finish within `challenge_timeout`: `failed`;
- a `failed` pool is left alone (no superblock, no block is written to it) until an
  administrator acts: `clear` accepts it as it is (its superblock is written if missing, it
  is `up`, and every block it should hold is checked and copied back where missing), or
  `offline` and later `online` have it verified again;
- a `draining` pool is watched like an `up` one: it goes down when it misses heartbeats,
  and comes back as `draining` (the pool set keeps that decision apart from health);
- pools added or removed at runtime get (or lose) their heartbeat loop: `add_pool`,
  `remove_pool`;
- a pool that is not failed and has no superblock (its contents were wiped while mounted,
  or its server came back empty) gets it back, is `up`, and `on_accepted` lists every
  block it should hold for the repair to check and copy back; a pool that comes back
  without its superblock but with block or journal objects is `failed` (someone tampered with it:
  an administrator decides); a pool whose superblock now
  belongs to another filesystem, or cannot be read, is `failed`: repfs never writes into
  another filesystem's pool.

Every state change and every challenge result is logged with the pool and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import trio

from repfs.backend.base import Pool
from repfs.backend.copies import BlockCopies
from repfs.backend.keys import BLOCK_PREFIX, JOURNAL_PREFIX, SUPERBLOCK_KEY
from repfs.backend.poolset import PoolSet
from repfs.backend.state import PoolState
from repfs.codec.superblock import Superblock
from repfs.errors import CorruptObject, ObjectNotFound, StorageError

log = logging.getLogger(__name__)

# (pool, how many or None for all) -> [(block id, object digest)] the pool should hold
# (block id, digest, place in a pack or None) of blocks a pool should hold
ChallengeSource = Callable[[str, int | None], list[tuple[bytes, bytes, tuple[str, int, int] | None]]]
CHALLENGE_PARALLEL = 4
CLEAR_TIMEOUT = 10.0  # seconds for the superblock requests of `clear`


async def _holds_blocks(pool: Pool) -> bool:
    """Whether a pool holds any block object or journal object (packs carry blocks too):
    one listing request per prefix."""
    for prefix in (BLOCK_PREFIX, JOURNAL_PREFIX):
        listing = pool.list(prefix)
        try:
            async for _ in listing:
                return True
        finally:
            close = getattr(listing, "aclose", None)
            if close is not None:
                await close()
    return False


class HealthMonitor:
    def __init__(
        self,
        poolset: PoolSet,
        copies: BlockCopies,
        pools: Mapping[str, Pool],
        superblock: Superblock,
        *,
        interval: float = 10.0,
        quick_interval: float = 0.2,
        ping_timeout: float = 2.0,
        down_after: int = 3,
        sample: int | None = 32,
        challenge_timeout: float = 120.0,
        challenge_source: ChallengeSource | None = None,
        on_accepted: Callable[[str, bool], object] | None = None,
        on_up: Callable[[str], None] | None = None,
        on_failed: Callable[[str, Sequence[bytes]], object] | None = None,
        initially_down: Iterable[str] = (),
        initially_offline: Iterable[str] = (),
    ) -> None:
        self.poolset = poolset
        self.copies = copies
        self.pools = dict(pools)
        self.superblock = superblock
        self.interval = interval
        self.quick_interval = min(quick_interval, interval)
        # A heartbeat has a short deadline of its own: a pool that is alive but does not
        # answer (frozen, overloaded, partitioned) misses it like a dead one, and after a
        # miss the next probe comes almost at once, so it is down in a few seconds.
        self.ping_timeout = min(ping_timeout, interval)
        self.down_after = down_after
        self.sample = sample
        self.challenge_timeout = challenge_timeout
        self.challenge_source = challenge_source
        self.on_accepted = on_accepted
        self.on_up = on_up
        self.on_failed = on_failed
        self.missed = dict.fromkeys(self.pools, 0)
        self._wake = {name: trio.Event() for name in self.pools}
        self._suspect = dict.fromkeys(self.pools, False)
        self._verifying: dict[str, trio.CancelScope] = {}
        self._watching: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        for name in initially_down:
            self.missed[name] = down_after
            poolset.set_state(name, PoolState.DOWN, "unreachable at mount")
        for name in initially_offline:
            poolset.set_state(name, PoolState.OFFLINE, "taken offline by an administrator")
        poolset.on_trouble = self.trouble

    def state(self, name: str) -> PoolState:
        return self.poolset.state(name)

    def _set(self, name: str, state: PoolState, why: str, bad: Sequence[bytes] = ()) -> None:
        was = self.poolset.state(name)
        self.poolset.set_state(name, state, why)
        if state == PoolState.FAILED and was != state and self.on_failed is not None:
            self.on_failed(name, bad)

    def trouble(self, name: str) -> None:
        """A request to `name` just failed as unavailable: check it now, not at the next beat."""
        if name in self._wake and not self._suspect[name]:
            self._suspect[name] = True
            self._wake[name].set()

    def add_pool(self, name: str, pool: Pool) -> None:
        """Watch a pool added at runtime (the pool set knows it already)."""
        self.pools[name] = pool
        self.missed[name] = 0
        self._wake[name] = trio.Event()
        self._suspect[name] = False
        if self._nursery is not None:
            self._nursery.start_soon(self._watch_in, name)

    def remove_pool(self, name: str) -> None:
        """Stop watching a pool removed at runtime."""
        self._stop_verify(name)
        scope = self._watching.pop(name, None)
        if scope is not None:
            scope.cancel()
        for table in (self.pools, self.missed, self._wake, self._suspect):
            table.pop(name, None)

    def take_offline(self, name: str) -> None:
        """An administrator takes a pool out on purpose: no traffic, no heartbeats, no alarms."""
        self._stop_verify(name)
        self.missed[name] = 0
        self._set(name, PoolState.OFFLINE, "taken offline by an administrator")

    def put_online(self, name: str) -> None:
        """An administrator puts an offline pool back: it is challenged before it is used."""
        if self.state(name) != PoolState.OFFLINE:
            raise ValueError(f"pool {name} is {self.state(name).value}, not offline")
        self._start_verify(name, "put back online by an administrator")
        self._wake[name].set()

    async def clear(self, name: str) -> None:
        """An administrator accepts a failed pool as it is: its superblock is written if it
        is missing, it is `up`, and what it lacks is copied back. ValueError if the pool is
        not failed or holds another filesystem; StorageError if it does not answer."""
        if self.state(name) != PoolState.FAILED:
            raise ValueError(f"pool {name} is {self.state(name).value}, not failed")
        pool = self.pools[name]
        with trio.fail_after(CLEAR_TIMEOUT):
            try:
                sb = Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
            except ObjectNotFound:
                await pool.put(SUPERBLOCK_KEY, self.superblock.to_bytes())
                sb = self.superblock
            except CorruptObject as exc:
                raise ValueError(f"pool {name} holds an unreadable superblock ({exc}); remove it instead") from None
        if sb.fs_uuid != self.superblock.fs_uuid:
            raise ValueError(f"pool {name} belongs to filesystem {sb.fs_uuid}; remove it instead")
        if self.state(name) != PoolState.FAILED:  # it changed while we asked the pool
            raise ValueError(f"pool {name} is {self.state(name).value}, not failed")
        self.missed[name] = 0
        self._accept(name, "cleared by an administrator: accepted as it is", verify=True)

    # --- heartbeats ---------------------------------------------------------------------

    async def check(self, name: str) -> None:
        """One heartbeat of one pool (none for a pool an administrator took offline)."""
        if self.state(name) == PoolState.OFFLINE:
            return
        pool = self.pools[name]
        try:
            stalls = self.poolset.stalls  # a stall of the daemon is not a missed heartbeat
            await stalls.within(self.ping_timeout, pool.ping)
            sb = await stalls.within(self.ping_timeout, lambda: self._superblock(name, pool))
        except CorruptObject as exc:
            self._set(name, PoolState.FAILED, f"unreadable superblock: {exc}")
            return
        except (StorageError, trio.TooSlowError) as exc:
            self.missed[name] += 1
            why = str(exc) or f"no answer within {self.ping_timeout:g} s"
            if self.state(name) == PoolState.VERIFYING and self.missed[name] >= self.down_after:
                self._stop_verify(name)  # an interrupted verification fails the pool (seed 001)
                why = f"verification interrupted: {self.missed[name]} missed heartbeats: {why}"
                self._set(name, PoolState.FAILED, why)
            elif self.state(name) in (PoolState.UP, PoolState.DRAINING):
                if self.missed[name] >= self.down_after:
                    self._stop_verify(name)
                    self._set(name, PoolState.DOWN, f"{self.missed[name]} missed heartbeats: {why}")
                else:
                    log.info("pool %s missed heartbeat %d: %s", name, self.missed[name], why)
            return
        self.missed[name] = 0
        self._suspect[name] = False
        if sb is None:
            return
        if sb.fs_uuid != self.superblock.fs_uuid:
            self._stop_verify(name)
            self._set(name, PoolState.FAILED, f"it now belongs to filesystem {sb.fs_uuid}")
            return
        if self.state(name) == PoolState.DOWN:
            self._start_verify(name, "it answers again")

    async def _superblock(self, name: str, pool: Pool) -> Superblock | None:
        """The pool's superblock, or None if it has none: a failed pool is left alone until
        an administrator acts; any other pool lost its contents, gets its superblock back
        and is accepted as it is."""
        try:
            return Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
        except ObjectNotFound:
            if self.state(name) == PoolState.FAILED:
                return None
        returning = self.state(name) in (PoolState.DOWN, PoolState.VERIFYING)
        if returning and await _holds_blocks(pool):
            self._stop_verify(name)
            self._set(name, PoolState.FAILED, "it came back without its superblock but with block or journal objects")
            return None
        log.warning("pool %s has no superblock (its contents were lost): writing it again", name)
        await pool.put(SUPERBLOCK_KEY, self.superblock.to_bytes())
        self._accept(name, "it came back empty" if returning else "its contents were wiped", verify=False)
        return None

    def _accept(self, name: str, why: str, *, verify: bool) -> None:
        """Use a pool as it is now, and have every block it should hold checked on it and
        copied back where missing (the repair service counts them down); with `verify`
        (a pool that had failed) its copies are read and checked by digest."""
        self._stop_verify(name)
        self._set(name, PoolState.UP, why)
        if self.on_accepted is not None:
            self.on_accepted(name, verify)

    async def check_all(self) -> None:
        async with trio.open_nursery() as n:
            for name in self.pools:
                n.start_soon(self.check, name)

    # --- challenges ------------------------------------------------------------------------

    def _start_verify(self, name: str, why: str) -> None:
        self._set(name, PoolState.VERIFYING, why)
        if self._nursery is None:
            return
        self._stop_verify(name)
        scope = trio.CancelScope()
        self._verifying[name] = scope
        self._nursery.start_soon(self._verify_in, name, scope)

    def _stop_verify(self, name: str) -> None:
        scope = self._verifying.pop(name, None)
        if scope is not None:
            scope.cancel()

    async def _verify_in(self, name: str, scope: trio.CancelScope) -> None:
        with scope:
            await self.verify(name)
        if self._verifying.get(name) is scope:
            del self._verifying[name]

    async def verify(self, name: str) -> bool:
        """Challenge a pool with blocks it should hold; `up` if all are good, else `failed`."""
        wanted = self.challenge_source(name, self.sample) if self.challenge_source else []
        checked = 0
        failure = ""
        bad: list[bytes] = []

        async def check_one(
            block_id: bytes, digest: bytes, place: tuple[str, int, int] | None, limiter: trio.CapacityLimiter
        ) -> None:
            nonlocal checked, failure
            async with limiter:
                if failure:
                    return
                obj, why = await self.copies.read_copy(name, block_id, digest, place)
            if obj is None:
                bad.append(block_id)
                failure = failure or f"block {block_id.hex()[:12]} is {why}"
                nursery.cancel_scope.cancel()
            else:
                checked += 1

        with trio.move_on_after(self.challenge_timeout) as timer:
            limiter = trio.CapacityLimiter(CHALLENGE_PARALLEL)
            async with trio.open_nursery() as nursery:
                for block_id, digest, place in wanted:
                    nursery.start_soon(check_one, block_id, digest, place, limiter)
        if timer.cancelled_caught:
            failure = f"challenge timed out after {self.challenge_timeout:g} s ({checked} of {len(wanted)} checked)"
        if failure:
            log.error("pool %s failed its challenge: %s", name, failure)
            self._set(name, PoolState.FAILED, f"challenge failed: {failure}", bad)
            return False
        log.info("pool %s passed its challenge: %d of %d blocks verified", name, checked, len(wanted))
        self._set(name, PoolState.UP, f"challenge passed ({checked} blocks verified)")
        if self.on_up is not None:
            self.on_up(name)
        return True

    # --- the service -------------------------------------------------------------------------

    async def _watch_in(self, name: str) -> None:
        scope = trio.CancelScope()
        self._watching[name] = scope
        with scope:
            await self._watch(name)

    async def _watch(self, name: str) -> None:
        await self.check(name)
        while True:
            quick = self._suspect[name] or self.missed[name] > 0 or self.state(name) == PoolState.DOWN
            with trio.move_on_after(self.quick_interval if quick else self.interval):
                await self._wake[name].wait()
            self._wake[name] = trio.Event()
            await self.check(name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self.pools:
                nursery.start_soon(self._watch_in, name)
            task_status.started()
