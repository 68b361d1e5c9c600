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
pool gets reads and writes; a `draining` one (an administrator's decision, kept beside
the health state) serves reads and deletes but takes nothing new and has no place in
placement. A pool that reports itself full takes no new blocks for a while but still
serves reads; so does a pool used past its critical threshold (a share of its configured
`capacity`, else of the total it reports; the bookkeeping is in space.py). Usage is measured now and then
(backend/usage.py) and kept up to date in between from the store's own writes; crossing
a threshold is logged. A pool call that fails as unavailable is reported through
`on_trouble`, so the health monitor looks at that pool at once instead of at its next
heartbeat; every call is reported to `observer` (metrics: latency and errors per pool).

Pools are added, reweighted, drained and removed at runtime (`add_pool`, `set_weight`,
`set_draining`, `remove_pool`); `placement()` freezes the placement before a change so
that the caller can queue for repair exactly the blocks whose targets changed.

Log lines and errors name the pool and the block id (its first 12 hex digits), never
object contents.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from repfs.backend.base import Pool, PoolUsage
from repfs.backend.deadline import PoolDeadline
from repfs.backend.keys import block_key
from repfs.backend.placement import rank_pools
from repfs.backend.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, retry
from repfs.backend.space import DEFAULT_THRESHOLDS, PoolSpace, SpaceBook
from repfs.backend.state import PoolState, object_digest
from repfs.errors import (
    CorruptObject,
    MetaNoSpace,
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
# States whose pool's calls in flight are abandoned when it enters them: a call whose size
# is unknown (a scrub's or a challenge's read, usage) is bounded by `op_timeout` alone, and
# must not hold its caller up once the heartbeats have found the pool gone.
_GONE = frozenset({PoolState.DOWN, PoolState.FAILED, PoolState.OFFLINE})
LIST_DEADLINE = 10.0  # seconds a listing of metadata objects may take at least


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


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    """Cancel `scope` once `event` is set (to wait for the first of several events)."""
    await event.wait()
    scope.cancel()


def _kind(exc: Exception) -> str:
    return next((word for cls, word in _KINDS if isinstance(exc, cls)), "error")


@dataclass(frozen=True)
class Placement:
    """Placement frozen at one moment: pool weights, the pools that place, replicas."""

    weights: tuple[tuple[str, float], ...]
    places: frozenset[str]
    replicas: int

    def targets(self, block_id: bytes) -> list[str]:
        return [n for n in rank_pools(block_id, self.weights) if n in self.places][: self.replicas]


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
        thresholds: Mapping[str, tuple[float, float]] | None = None,
        draining: Iterable[str] = (),
    ) -> None:
        if set(pools) != set(weights):
            raise ValueError(f"pools {sorted(pools)} and weights {sorted(weights)} name different pools")
        for name, pool in pools.items():
            if pool.name != name:
                raise ValueError(f"pool {pool.name} is registered under another name, {name}")
        if not 1 <= write_quorum <= replicas:
            raise ValueError(f"need 1 <= write_quorum ({write_quorum}) <= replicas ({replicas})")
        self._pools: dict[str, Pool] = {}
        self._weights: dict[str, float] = {}
        self._state: dict[str, PoolState] = {}
        self.space_book = SpaceBook()
        self._draining: set[str] = set()
        self._inflight: dict[str, int] = {}
        self._inflight_bytes: dict[str, int] = {}  # bytes the calls in flight move (where known)
        self._calls: dict[str, set[trio.CancelScope]] = {}  # calls in flight, abandoned if the pool goes
        self._idle_events: dict[str, trio.Event] = {}
        self._op_timeout = op_timeout
        self._deadlines: dict[str, PoolDeadline] = {}
        self.suspected: set[str] = set()  # missed a deadline: last choice for reads until it answers
        self.replicas = replicas
        self.write_quorum = write_quorum
        for name, pool in pools.items():
            self._register(
                pool,
                weights[name],
                capacity=int((capacities or {}).get(name, 0)),
                thresholds=(thresholds or {}).get(name, DEFAULT_THRESHOLDS),
            )
        rank_pools(b"", list(self._weights.items()))  # validates the weights now rather than on first use
        for name in draining:
            self.set_draining(name, True)
        self.on_trouble: Callable[[str], None] | None = None
        # (pool, operation, seconds, None or the kind of failure) after every pool call
        self.observer: Callable[[str, str, float, str | None], None] | None = None
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay
        self.repairs = 0

    # --- pools and their state ------------------------------------------------------

    @property
    def pool_names(self) -> list[str]:
        return list(self._pools)

    def pool(self, name: str) -> Pool:
        self._check_name(name)
        return self._pools[name]

    def weight(self, name: str) -> float:
        self._check_name(name)
        return self._weights[name]

    def ranked(self, block_id: bytes) -> list[str]:
        """Every pool, in the placement (and read priority) order of `block_id`."""
        return rank_pools(block_id, list(self._weights.items()))

    def _places(self, name: str) -> bool:
        return self._state[name].places and name not in self._draining

    def targets(self, block_id: bytes) -> list[str]:
        """The pools that should hold `block_id`: the first `replicas` of its order that
        keep a place in placement (a down pool keeps its place; a failed or draining one
        does not)."""
        return [n for n in self.ranked(block_id) if self._places(n)][: self.replicas]

    def placement(self) -> Placement:
        """The placement as it is now, frozen: compare it with a later one to find the
        blocks a change of pools moves."""
        return Placement(
            tuple(self._weights.items()), frozenset(n for n in self._pools if self._places(n)), self.replicas
        )

    def set_state(self, name: str, state: PoolState, why: str = "") -> None:
        """Set a pool's health state; `up` is `draining` for a pool being drained."""
        self._check_name(name)
        if state == PoolState.UP and name in self._draining:
            state = PoolState.DRAINING
        if self._state[name] != state:
            log.warning("pool %s is now %s%s", name, state.value, f": {why}" if why else "")
            if state in _GONE:  # nothing waits any longer for a pool that is out of use
                for scope in self._calls.get(name, ()):
                    scope.cancel()
        self._state[name] = state

    def state(self, name: str) -> PoolState:
        self._check_name(name)
        return self._state[name]

    def usable(self, name: str) -> bool:
        """Whether `name` serves reads now."""
        self._check_name(name)
        return self._state[name].serves

    def draining(self, name: str) -> bool:
        self._check_name(name)
        return name in self._draining

    def set_draining(self, name: str, draining: bool) -> None:
        """Start (or stop) draining a pool: it keeps serving reads but loses its place in
        placement and takes no new blocks. The caller queues the blocks that move."""
        self._check_name(name)
        if draining:
            self._draining.add(name)
            if self._state[name] == PoolState.UP:
                self.set_state(name, PoolState.DRAINING, "drained by an administrator")
        else:
            self._draining.discard(name)
            if self._state[name] == PoolState.DRAINING:
                self.set_state(name, PoolState.UP, "draining stopped by an administrator")

    # --- pools at runtime ---------------------------------------------------------------

    def _register(self, pool: Pool, weight: float, *, capacity: int, thresholds: tuple[float, float]) -> None:
        name = pool.name
        self._pools[name] = pool
        self._weights[name] = float(weight)
        self._state[name] = PoolState.UP
        self.space_book.add(name, capacity, thresholds)
        self._inflight[name] = 0
        ceiling = self._op_timeout if self._op_timeout is not None else math.inf
        self._deadlines[name] = PoolDeadline(ceiling=ceiling)

    def add_pool(
        self,
        pool: Pool,
        weight: float,
        *,
        capacity: int = 0,
        thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    ) -> None:
        """Bring a new pool into placement (its superblock must be there already). The
        caller queues the blocks whose targets changed (see `placement`)."""
        if pool.name in self._pools:
            raise ValueError(f"a pool named {pool.name!r} exists already")
        rank_pools(b"", [*self._weights.items(), (pool.name, float(weight))])  # validates
        self._register(pool, weight, capacity=capacity, thresholds=thresholds)
        log.debug("pool %s (%s) added, weight %g", pool.name, pool.url, weight)

    def remove_pool(self, name: str) -> Pool:
        """Take a pool out of the store: no read or write reaches it any more (calls in
        flight finish; `idle` waits for them). Returns the pool, to be closed."""
        self._check_name(name)
        if len(self._pools) == 1:
            raise ValueError("cannot remove the last pool")
        pool = self._pools.pop(name)
        self._weights.pop(name, None)
        self._state.pop(name, None)
        self.space_book.remove(name)
        self._draining.discard(name)
        log.debug("pool %s (%s) removed", name, pool.url)
        return pool

    async def idle(self, name: str) -> None:
        """Wait until no call to `name` is in flight (after `remove_pool`)."""
        if self._inflight.get(name, 0) > 0:
            event = self._idle_events.setdefault(name, trio.Event())
            await event.wait()
        self._inflight.pop(name, None)
        self._idle_events.pop(name, None)

    def set_weight(self, name: str, weight: float) -> None:
        self._check_name(name)
        rank_pools(b"", [*((n, w) for n, w in self._weights.items() if n != name), (name, float(weight))])
        self._weights[name] = float(weight)

    # --- space (see space.py) -----------------------------------------------------------

    def full(self, name: str) -> bool:
        """Whether `name` takes no new blocks now (it said so lately, or is past critical)."""
        return self.space_book.full(name)

    def writable(self, name: str) -> bool:
        return self._state[name].takes_blocks and name not in self._draining and not self.full(name)

    def no_space(self) -> bool:
        """Whether no pool that takes blocks could take a new one (writes then get ENOSPC)."""
        taking = [n for n in self._pools if self._state[n].takes_blocks and n not in self._draining]
        return bool(taking) and all(self.full(n) for n in taking)

    def set_capacity(self, name: str, capacity: int) -> None:
        self._check_name(name)
        self.space_book.set_capacity(name, capacity)

    def set_thresholds(self, name: str, warn: float, critical: float) -> None:
        self._check_name(name)
        self.space_book.set_thresholds(name, warn, critical)

    def note_usage(self, name: str, used: int, total: int = 0, free: int = 0) -> None:
        """The bytes a pool holds and has, as measured (the store keeps `used` up to date
        from there as it writes)."""
        self.space_book.note_usage(name, used, total, free)

    def space(self, name: str) -> PoolSpace:
        self._check_name(name)
        return self.space_book.space(name)

    def _check_name(self, name: str) -> None:
        if name not in self._pools:
            raise ValueError(f"no pool named {name!r}; pools are {sorted(self._pools)}")

    def deadline(self, name: str, nbytes: int = 0) -> float:
        """Seconds a request moving `nbytes` to or from pool `name` may take now."""
        return self._deadlines[name].deadline(
            nbytes,
            self._inflight_bytes.get(name, 0),
            shared_ahead=sum(self._inflight_bytes.get(n, 0) for n in self._pools),
            shared_throughput=sum(self._deadlines[n].throughput() for n in self._pools),
        )

    async def _call(
        self,
        name: str,
        what: str,
        op: Callable[[Pool], Awaitable[T]],
        *,
        attempts: int | None = None,
        nbytes: int | None = None,
        limit: float | None = None,
    ) -> T:
        """`op(pool)` with retries of PoolUnavailable, bounded in all by the pool's deadline
        for `nbytes` (deadline.py), or by `op_timeout` when the size of the work is unknown.
        A pool that misses its deadline is suspected and reported as in trouble. A call in
        flight when its pool goes down (or failed, or offline) is abandoned at once."""
        pool = self._pools.get(name)
        if pool is None:
            raise PoolUnavailable(f"pool {name} is not part of this filesystem any more")
        ahead = self._inflight_bytes.get(name, 0)
        if limit is not None:
            timeout = limit
        elif nbytes is not None:
            timeout = self.deadline(name, nbytes)
        else:
            timeout = self._op_timeout if self._op_timeout is not None else math.inf
        deadline = trio.current_time() + timeout
        started = time.monotonic()
        failure: str | None = "error"
        self._inflight[name] = self._inflight.get(name, 0) + 1
        self._inflight_bytes[name] = ahead + (nbytes or 0)
        scope = trio.CancelScope(deadline=deadline)
        calls = self._calls.setdefault(name, set())
        calls.add(scope)
        try:
            with scope:
                result = await retry(
                    lambda: op(pool),
                    attempts=attempts or self._attempts,
                    base_delay=self._base_delay,
                    deadline=deadline,
                    is_transient=_is_transient,
                )
                failure = None
                self.suspected.discard(name)
                if nbytes is not None:
                    self._deadlines[name].observe(time.monotonic() - started, nbytes, ahead)
                return result
            if trio.current_time() < deadline:  # abandoned: the pool went out of use meanwhile
                failure = "unavailable"
                state = self._state.get(name)
                raise PoolUnavailable(f"pool {name}: {what} abandoned: the pool is {state.value if state else 'gone'}")
            failure = "timeout"
            self.suspected.add(name)
            if self.on_trouble is not None:
                self.on_trouble(name)
            raise PoolUnavailable(f"pool {name}: {what} missed its deadline of {timeout:.3g} s")
        except ObjectNotFound:
            failure = None  # an answer, not a failure of the pool
            raise
        except StorageError as exc:
            failure = _kind(exc)
            if isinstance(exc, PoolUnavailable) and self.on_trouble is not None:
                self.on_trouble(name)
            raise
        finally:
            calls.discard(scope)
            self._inflight[name] = self._inflight.get(name, 1) - 1
            self._inflight_bytes[name] = max(0, self._inflight_bytes.get(name, 0) - (nbytes or 0))
            if self._inflight[name] == 0 and name in self._idle_events:
                self._idle_events[name].set()
            if self.observer is not None:
                self.observer(name, what.split(" ", 1)[0], time.monotonic() - started, failure)

    # --- blocks -----------------------------------------------------------------------

    async def _put_ranked(
        self, key: str, obj: bytes, candidates: list[str], copies: int, what: str
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
        need = min(self.write_quorum, copies)

        async def slot(first: str) -> None:
            running = 0
            changed = trio.Event()
            filled = False

            async def attempt(name: str, finished: trio.Event) -> None:
                nonlocal running, changed, filled
                try:
                    # bounded by op_timeout only: this slot's deadline decides when to hedge
                    await self._call(
                        name, f"put {key}", lambda pool: pool.put(key, obj), nbytes=len(obj), limit=self._op_timeout
                    )
                except StorageError as exc:
                    failures[name] = exc
                    if isinstance(exc, PoolFull):
                        self.space_book.mark_full(name, exc)
                else:
                    if not filled:
                        filled = True
                        stored.add(name)
                        self.space_book.count(name, len(obj))
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
                    wait = self.deadline(name, len(obj))
                    with trio.move_on_after(wait):
                        await finished.wait()
                    nxt = next(pending, None)
                    if finished.is_set():  # it failed (a success cancels this loop)
                        log.warning(
                            "cannot store %s on pool %s (%s); %s",
                            what,
                            name,
                            _reason(failures[name]) if name in failures else "error",
                            f"trying pool {nxt}" if nxt else "no pool left to try",
                        )
                    else:  # slow: suspected, and hedged by the next candidate
                        self.suspected.add(name)
                        if self.on_trouble is not None:
                            self.on_trouble(name)
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

    async def put_block(self, block_id: bytes, obj: bytes) -> list[str]:
        """Store `obj` on up to `replicas` pools; return the pools that hold it, in rank order.

        Raises NoSpace if fewer than `write_quorum` pools stored it and every pool that
        failed was full, QuorumNotReached otherwise.
        """
        key = block_key(block_id)
        ranked = self.ranked(block_id)
        stored, failures = await self._put_ranked(
            key, obj, [n for n in ranked if self.writable(n)], self.replicas, f"block {block_id.hex()[:12]}"
        )
        holders = [n for n in ranked if n in stored and n in self._pools]  # removed meanwhile: not a holder
        if len(holders) >= self.write_quorum:
            return holders
        reasons = {n: _reason(e) for n, e in failures.items()}
        reasons.update({n: self._state[n].value for n in ranked if not self._state[n].takes_blocks})
        reasons.update({n: "full" for n in ranked if n not in reasons and self.full(n)})
        msg = (
            f"block {block_id.hex()[:12]}: stored on {len(holders)} pool(s) {holders}, "
            f"write quorum is {self.write_quorum}; failed: {_summary(reasons)}"
        )
        serving = [n for n in ranked if self._state[n].takes_blocks]
        if serving and all(self.full(n) for n in serving):
            raise NoSpace(msg)
        raise QuorumNotReached(msg)

    async def get_block(
        self,
        block_id: bytes,
        holders: Sequence[str],
        decode: Callable[[bytes], bytes],
        *,
        size_hint: int | None = None,
    ) -> bytes:
        """The plaintext of a block: holders first, then any other usable pool, in rank order
        (suspected pools last).

        The reads are hedged: when a pool has not answered within its deadline for
        `size_hint` bytes (the stored size), the next pool is asked as well, and the first
        good answer wins; a pool that fails asks the next at once. The slow request is
        cancelled then, never waited for. `decode(obj)` turns an object into plaintext or
        raises CorruptObject; it runs in a worker thread. Holders that lacked the block or
        held a corrupt copy get the good object back (read repair). Raises ReadFailed when
        no pool has a good copy.
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
        order.sort(key=lambda n: n in self.suspected)  # stable: rank order within each group
        to_repair: dict[str, str] = {}
        found: list[tuple[str, bytes, bytes]] = []  # (pool, object, plaintext) of the first good copy

        async def attempt(name: str, last: bool, gave_up: trio.Event) -> None:
            try:
                # with another copy to try, fail over at once rather than retry a failing pool
                obj = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=None if last else 1)
                data = await trio.to_thread.run_sync(decode, obj, limiter=self._cpu_limiter)
            except (ObjectNotFound, CorruptObject) as exc:
                failures[name] = _reason(exc)
                if name in held:
                    to_repair[name] = "missing" if isinstance(exc, ObjectNotFound) else "corrupt"
                gave_up.set()
                return
            except StorageError as exc:
                failures[name] = _reason(exc)
                gave_up.set()
                return
            if not found:
                found.append((name, obj, data))
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for i, name in enumerate(order):
                gave_up = trio.Event()
                nursery.start_soon(attempt, name, i + 1 == len(order), gave_up)
                if i + 1 < len(order):
                    with trio.move_on_after(self.deadline(name, size_hint or 0)):
                        await gave_up.wait()
                    if not gave_up.is_set():  # slow: suspected, and hedged by the next pool
                        self.suspected.add(name)
                        if self.on_trouble is not None:
                            self.on_trouble(name)
                        log.info("block %s: pool %s is slow to answer; asking pool %s too", short, name, order[i + 1])
        if not found:
            raise ReadFailed(f"block {short}: no readable copy; tried: {_summary(failures)}")
        name, obj, data = found[0]
        if name not in held:
            log.info("block %s found on pool %s, which is not a recorded holder", short, name)
        if to_repair:
            await self._repair(block_id, obj, to_repair)
        return data

    async def _repair(self, block_id: bytes, obj: bytes, bad: Mapping[str, str]) -> None:
        key = block_key(block_id)
        short = block_id.hex()[:12]

        async def repair_one(name: str, why: str) -> None:
            try:
                await self._call(name, f"put {key}", lambda pool: pool.put(key, obj))
            except StorageError as exc:
                log.warning("cannot repair block %s on pool %s (was %s): %s", short, name, why, exc)
                return
            self.space_book.count(name, len(obj))
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
        failed: list[str] = []

        async def delete_one(name: str) -> None:
            try:
                await self._call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)
            except StorageError as exc:
                log.warning("cannot delete block %s from pool %s: %s", short, name, exc)
                failed.append(name)
            else:
                if name in recorded and stored_size:
                    self.space_book.count(name, -stored_size)

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

    async def has_copy(self, name: str, block_id: bytes) -> bool:
        """Whether pool `name` holds an object for the block (a soft check: not its content)."""
        self._check_name(name)
        key = block_key(block_id)
        return await self._call(name, f"check {key}", lambda pool: pool.exists(key), nbytes=0)

    async def put_copy(self, name: str, block_id: bytes, obj: bytes) -> None:
        """Store one copy of a block on `name` (repair and rebalance); raises StorageError."""
        key = block_key(block_id)
        try:
            await self._call(name, f"put {key}", lambda pool: pool.put(key, obj), nbytes=len(obj))
        except PoolFull as exc:
            self.space_book.mark_full(name, exc)
            raise
        self.space_book.count(name, len(obj))

    async def delete_copy(self, name: str, block_id: bytes) -> None:
        """Delete one pool's copy of a block (an extra copy after repair); raises StorageError."""
        key = block_key(block_id)
        await self._call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)

    # --- small metadata objects (superblock, ...) --------------------------------------

    async def put_meta(self, key: str, data: bytes, *, copies: int | None = None) -> list[str]:
        """Store a metadata object (journal segment, snapshot, lease) at once on `copies`
        pools that serve, chosen by rendezvous hashing of its key (stand-ins for those that
        fail), or on every pool that serves when `copies` is None (a draining one too:
        metadata is read back from every pool). Returns the pools that took it; raises
        QuorumNotReached (MetaNoSpace if they were all full) when fewer than `write_quorum` did."""
        serving = [n for n in rank_pools(key.encode(), list(self._weights.items())) if self._state[n].serves]
        stored, failures = await self._put_ranked(
            key, data, serving, len(serving) if copies is None else copies, key
        )
        if len(stored) >= self.write_quorum:
            return [n for n in self._pools if n in stored]
        reasons = {n: _reason(e) for n, e in failures.items()}
        reasons |= {n: self._state[n].value for n in self._pools if not self._state[n].serves}
        msg = (
            f"{key}: stored on {len(stored)} pool(s), write quorum is {self.write_quorum}; "
            f"failed: {_summary(reasons)}"
        )
        if failures and all(isinstance(e, PoolFull) for e in failures.values()):
            raise MetaNoSpace(msg)
        raise QuorumNotReached(msg)

    async def list_meta(self, prefix: str, *, every_pool: bool = False) -> dict[str, list[str]]:
        """Metadata object keys under `prefix` on the pools that serve (or on every pool that
        answers and is not offline, when `every_pool`), each with the pools that hold it."""
        found: dict[str, list[str]] = {}

        async def list_one(name: str) -> None:
            async def keys(pool: Pool) -> list[str]:
                return [k async for k in pool.list(prefix)]

            try:
                # a listing's size is unknown: a generous multiple of the pool's deadline,
                # but a suspected pool (it just missed one) gets no more than a small request
                limit = self.deadline(name) if name in self.suspected else max(LIST_DEADLINE, 20 * self.deadline(name))
                for key in await self._call(name, f"list {prefix}", keys, limit=limit):
                    found.setdefault(key, []).append(name)
            except StorageError as exc:
                log.warning("cannot list %s on pool %s: %s", prefix, name, exc)

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                if self._state[name].serves or (every_pool and self._state[name] != PoolState.OFFLINE):
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
            # small objects (the lease): a pool that hangs misses a short deadline
            with contextlib.suppress(StorageError):
                found[name] = await self._call(name, f"get {key}", lambda pool: pool.get(key), attempts=1, nbytes=0)

        async with trio.open_nursery() as nursery:
            for name in self._pools:
                if self._state[name] != PoolState.OFFLINE:  # an administrator's: no traffic
                    nursery.start_soon(get_one, name)
        return found

    async def delete_meta(self, key: str, holders: Sequence[str]) -> None:
        """Delete a metadata object from the pools that hold it (best effort: logged)."""

        async def delete_one(name: str) -> None:
            try:
                await self._call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)
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
                if self._state[name] != PoolState.OFFLINE:
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
