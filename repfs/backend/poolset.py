"""`PoolSet`: the pools of a filesystem and the one way to send a request to one.

It knows each pool's weight, health state (see state.py, driven by the health monitor)
and the `draining` flag (an administrator's decision, kept beside the health state);
from these comes placement: a block's pools are the first `replicas` pools of its
`placement.rank_pools` order that keep a place (`targets`). Only an `up` pool gets reads
and writes; a `draining` one serves reads and deletes but takes nothing new and has no
place in placement. A pool that reports itself full takes no new blocks for a while but
still serves reads; so does a pool used past its critical threshold (a share of its
configured `capacity`, else of the total it reports; the bookkeeping is in space.py).
Usage is measured now and then (backend/usage.py) and kept up to date in between from
the writes of the store's parts; crossing a threshold is logged.

Pools are added, reweighted, drained and removed at runtime (`add_pool`, `set_weight`,
`set_draining`, `remove_pool`); `placement()` freezes the placement before a change so
that the caller can queue for repair exactly the blocks whose targets changed.

Every request to a pool goes through `call`: `PoolUnavailable` is retried a few times
(see `retry`), and the whole is bounded by the pool's deadline for the bytes it moves
(deadline.py), or by `op_timeout` when the size of the work is unknown; a call that takes
longer counts as `PoolUnavailable`. A pool that misses a deadline is *suspected* (last
choice for reads until it answers again). A pool call that fails as unavailable is
reported through `on_trouble`, so the health monitor looks at that pool at once instead
of at its next heartbeat; every call is reported to `observer` (metrics: latency and
errors per pool). The parts built over a PoolSet: replicated.py (blocks), copies.py (one
pool's copy of a block), metaobjects.py (journal segments, snapshots, the lease).

Log lines and errors name the pool, never object contents.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import trio

from repfs.backend.base import Pool, PoolUsage
from repfs.backend.deadline import PoolDeadline
from repfs.backend.placement import rank_pools
from repfs.backend.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, retry
from repfs.backend.space import DEFAULT_THRESHOLDS, PoolSpace, SpaceBook
from repfs.backend.stalls import LoopStalls
from repfs.backend.state import PoolState
from repfs.errors import CorruptObject, ObjectNotFound, PoolFull, PoolUnavailable, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")



DEFAULT_OP_TIMEOUT = 60.0
# States whose pool's calls in flight are abandoned when it enters them: a call whose size
# is unknown (a scrub's or a challenge's read, usage) is bounded by `op_timeout` alone, and
# must not hold its caller up once the heartbeats have found the pool gone.
_GONE = frozenset({PoolState.DOWN, PoolState.FAILED, PoolState.OFFLINE})


def _is_transient(exc: Exception) -> bool:
    return isinstance(exc, PoolUnavailable)


_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (CorruptObject, "corrupt"),
    (PoolFull, "full"),
    (PoolUnavailable, "unavailable"),
)


def reason(exc: Exception) -> str:
    """Why one pool failed: a word, then the pool's own message (never object contents)."""
    if isinstance(exc, ObjectNotFound):
        return "missing"
    kind = next((word for cls, word in _KINDS if isinstance(exc, cls)), type(exc).__name__)
    return f"{kind}: {exc}"


def summary(failures: Mapping[str, str]) -> str:
    """The failures of several pools, for one error message."""
    return "; ".join(f"{name} ({why})" for name, why in failures.items()) or "none"


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


class PoolSet:
    """The pools by name, their placement and state, and `call`, the request primitive."""

    def __init__(
        self,
        pools: Mapping[str, Pool],
        weights: Mapping[str, float],
        *,
        replicas: int,
        write_quorum: int,
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
        self.state_observers: list[Callable[[str, PoolState, str], None]] = []  # told of every change
        self.op_timeout = op_timeout
        self._deadlines: dict[str, PoolDeadline] = {}
        self.stalls = LoopStalls()  # time the daemon did not run counts against no deadline
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
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay

    # --- pools and their state ------------------------------------------------------

    @property
    def pool_names(self) -> list[str]:
        return list(self._pools)

    def __contains__(self, name: object) -> bool:
        return name in self._pools

    def pool(self, name: str) -> Pool:
        self.check_name(name)
        return self._pools[name]

    def weight(self, name: str) -> float:
        self.check_name(name)
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
        self.check_name(name)
        if state == PoolState.UP and name in self._draining:
            state = PoolState.DRAINING
        if self._state[name] != state:
            log.warning("pool %s is now %s%s", name, state.value, f": {why}" if why else "")
            if state in _GONE:  # nothing waits any longer for a pool that is out of use
                for scope in self._calls.get(name, ()):
                    scope.cancel()
            self._state[name] = state
            for observe in self.state_observers:
                observe(name, state, why)
        self._state[name] = state

    def state(self, name: str) -> PoolState:
        self.check_name(name)
        return self._state[name]

    def usable(self, name: str) -> bool:
        """Whether `name` serves reads now."""
        self.check_name(name)
        return self._state[name].serves

    def draining(self, name: str) -> bool:
        self.check_name(name)
        return name in self._draining

    def set_draining(self, name: str, draining: bool) -> None:
        """Start (or stop) draining a pool: it keeps serving reads but loses its place in
        placement and takes no new blocks. The caller queues the blocks that move."""
        self.check_name(name)
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
        ceiling = self.op_timeout if self.op_timeout is not None else math.inf
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
        """Take a pool out of the filesystem: no read or write reaches it any more (calls in
        flight finish; `idle` waits for them). Returns the pool, to be closed."""
        self.check_name(name)
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
        self.check_name(name)
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
        self.check_name(name)
        self.space_book.set_capacity(name, capacity)

    def set_thresholds(self, name: str, warn: float, critical: float) -> None:
        self.check_name(name)
        self.space_book.set_thresholds(name, warn, critical)

    def note_usage(self, name: str, used: int, total: int = 0, free: int = 0) -> None:
        """The bytes a pool holds and has, as measured (the store keeps `used` up to date
        from there as it writes)."""
        self.space_book.note_usage(name, used, total, free)

    def space(self, name: str) -> PoolSpace:
        self.check_name(name)
        return self.space_book.space(name)

    def check_name(self, name: str) -> None:
        """Raise ValueError for a name that is no pool of this set."""
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

    def suspect(self, name: str) -> None:
        """`name` missed a deadline: last choice for reads until it answers again, and
        reported as in trouble."""
        self.suspected.add(name)
        if self.on_trouble is not None:
            self.on_trouble(name)

    async def call(
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
            timeout = self.op_timeout if self.op_timeout is not None else math.inf
        begun = trio.current_time()
        deadline = begun + timeout
        lost = 0.0  # the time the daemon itself did not run meanwhile (stalls.py)
        started = time.monotonic()
        failure: str | None = "error"
        self._inflight[name] = self._inflight.get(name, 0) + 1
        self._inflight_bytes[name] = ahead + (nbytes or 0)
        calls = self._calls.setdefault(name, set())
        scope = trio.CancelScope(deadline=deadline)
        calls.add(scope)
        try:
            while True:
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
                        took = time.monotonic() - started - self.stalls.lost_since(begun)
                        self._deadlines[name].observe(max(0.0, took), nbytes, ahead)
                    return result
                if trio.current_time() < deadline:  # abandoned: the pool went out of use meanwhile
                    failure = "unavailable"
                    state = self._state.get(name)
                    raise PoolUnavailable(
                        f"pool {name}: {what} abandoned: the pool is {state.value if state else 'gone'}"
                    )
                if self.stalls.lost_since(begun) <= lost:
                    break
                lost = self.stalls.lost_since(begun)  # the daemon stalled: ask again for the time it lost
                deadline = begun + timeout + lost
                calls.discard(scope)
                scope = trio.CancelScope(deadline=deadline)
                calls.add(scope)
            failure = "timeout"
            self.suspect(name)
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

    # --- the rest ------------------------------------------------------------------------

    async def usage(self) -> dict[str, PoolUsage]:
        """Usage of every pool that answers, by pool name."""
        result: dict[str, PoolUsage] = {}

        async def one(name: str) -> None:
            try:
                result[name] = await self.call(name, "usage", lambda pool: pool.usage())
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
