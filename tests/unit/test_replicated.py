"""ReplicatedStore over a PoolSet of in-memory pools: placement, stand-ins, quorum, failover, repair."""

from __future__ import annotations

import errno
import hashlib
import logging
from collections.abc import Mapping

import pytest
import trio
import trio.testing

from repfs.backend.base import Pool
from repfs.backend.copies import BlockCopies
from repfs.backend.keys import SUPERBLOCK_KEY, block_key
from repfs.backend.memory import MemoryPool
from repfs.backend.metaobjects import MetaObjects
from repfs.backend.placement import rank_pools
from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.retry import retry
from repfs.backend.state import PoolState
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

BID = hashlib.sha256(b"block one").digest()
KEY = block_key(BID)
SHORT = BID.hex()[:12]
SECRET = b"top secret payload"


def encode(data: bytes) -> bytes:
    return b"ok:" + hashlib.sha256(data).digest()[:8] + data


def decode(obj: bytes) -> bytes:
    data = obj[11:]
    if not obj.startswith(b"ok:") or obj[3:11] != hashlib.sha256(data).digest()[:8]:
        raise CorruptObject("checksum mismatch")
    return data


OBJ = encode(SECRET)


class RecordingPool(MemoryPool):
    """A MemoryPool that notes every get and put in a log shared by all pools of a test,
    fails its next `flaky` calls, and can hang forever."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(name)
        self.log, self.flaky, self.hang = log, 0, False

    async def _enter(self, key: str | None = None) -> None:
        await super()._enter(key)
        if self.hang:
            await trio.sleep_forever()
        if self.flaky:
            self.flaky -= 1
            raise PoolUnavailable(f"pool {self.name}: flaky")

    async def put(self, key: str, data: bytes) -> None:
        self.log.append((self.name, "put"))
        await super().put(key, data)

    async def get(self, key: str) -> bytes:
        self.log.append((self.name, "get"))
        return await super().get(key)


Setup = tuple[PoolSet, ReplicatedStore, dict[str, RecordingPool], list[tuple[str, str]]]


def make_store(n: int = 4, *, replicas: int = 2, write_quorum: int = 1, op_timeout: float = 60.0) -> Setup:
    log: list[tuple[str, str]] = []
    pools = {f"p{i}": RecordingPool(f"p{i}", log) for i in range(n)}
    weights = {name: 1.0 + i for i, name in enumerate(pools)}
    ps = PoolSet(
        pools,
        weights,
        replicas=replicas,
        write_quorum=write_quorum,
        op_timeout=op_timeout,
        retry_base_delay=0.001,
    )
    return ps, ReplicatedStore(ps), pools, log


def holding(pools: dict[str, RecordingPool], key: str = KEY) -> set[str]:
    return {name for name, p in pools.items() if key in p.objects}


# --- writes -------------------------------------------------------------------------------


@pytest.mark.trio
async def test_put_goes_to_the_first_pools_of_the_rank() -> None:
    ps, store, pools, _ = make_store(5, replicas=3)
    ranked = ps.ranked(BID)
    assert await store.put_block(BID, OBJ) == ranked[:3]
    assert holding(pools) == set(ranked[:3])
    assert all(pools[n].objects[KEY] == OBJ for n in ranked[:3])
    pools[ranked[0]].flaky = 2  # two transient failures are retried on the same pool
    assert await store.put_block(BID, OBJ) == ranked[:3]  # and putting again is fine
    assert holding(pools) == set(ranked[:3])


@pytest.mark.parametrize("fault", ["down", "full"])
@pytest.mark.trio
async def test_next_pool_stands_in_for_a_failed_one(caplog: pytest.LogCaptureFixture, fault: str) -> None:
    ps, store, pools, _ = make_store(4, replicas=2)
    ranked = ps.ranked(BID)
    setattr(pools[ranked[1]], fault, True)
    setattr(pools[ranked[2]], fault, True)
    with caplog.at_level(logging.WARNING):
        assert await store.put_block(BID, OBJ) == [ranked[0], ranked[3]]
    assert holding(pools) == {ranked[0], ranked[3]}
    assert f"on pool {ranked[1]} ({'unavailable' if fault == 'down' else 'full'}:" in caplog.text
    assert f"trying pool {ranked[2]}" in caplog.text and f"trying pool {ranked[3]}" in caplog.text


@pytest.mark.trio
async def test_unusable_pools_get_no_writes() -> None:
    ps, store, _, log = make_store(4, replicas=2)
    ranked = ps.ranked(BID)
    ps.set_state(ranked[0], PoolState.DOWN)
    assert not ps.usable(ranked[0])
    assert await store.put_block(BID, OBJ) == ranked[1:3]
    assert (ranked[0], "put") not in log
    ps.set_state(ranked[0], PoolState.UP)
    assert await store.put_block(BID, OBJ) == ranked[:2]


@pytest.mark.trio
async def test_fewer_copies_than_replicas_is_a_deficit(caplog: pytest.LogCaptureFixture) -> None:
    ps, store, pools, _ = make_store(3, replicas=3, write_quorum=1)
    ranked = ps.ranked(BID)
    pools[ranked[0]].down = True
    pools[ranked[2]].down = True
    with caplog.at_level(logging.WARNING):
        assert await store.put_block(BID, OBJ) == [ranked[1]]


@pytest.mark.trio
async def test_quorum_not_reached_and_no_space(caplog: pytest.LogCaptureFixture) -> None:
    ps, store, pools, _ = make_store(3, replicas=2, write_quorum=2)
    ranked = ps.ranked(BID)
    pools[ranked[0]].down = True
    pools[ranked[1]].full = True
    ps.set_state(ranked[2], PoolState.DOWN)
    with caplog.at_level(logging.WARNING), pytest.raises(QuorumNotReached) as info:
        await store.put_block(BID, OBJ)
    msg = str(info.value)
    assert SHORT in msg and "write quorum is 2" in msg
    assert f"{ranked[0]} (unavailable: pool {ranked[0]} is down)" in msg
    assert f"{ranked[1]} (full:" in msg and f"{ranked[2]} (down)" in msg
    for name in ranked:
        ps.set_state(name, PoolState.DOWN)
    with pytest.raises(QuorumNotReached, match="stored on 0 pool"):
        await store.put_block(BID, OBJ)
    for name, p in pools.items():  # every pool full: the caller sees ENOSPC, not EIO
        ps.set_state(name, PoolState.UP)
        p.down, p.full = False, True
    with pytest.raises(NoSpace, match="stored on 0 pool"):
        await store.put_block(BID, OBJ)


class RendezvousPool(MemoryPool):
    """Its put waits until the other pool's put has started: both must run at once."""

    def __init__(self, name: str, started: dict[str, trio.Event], other: str) -> None:
        super().__init__(name)
        self.started, self.other = started, other

    async def put(self, key: str, data: bytes) -> None:
        self.started[self.name].set()
        await self.started[self.other].wait()
        await super().put(key, data)


@pytest.mark.trio
async def test_replica_puts_run_in_parallel(autojump_clock: trio.testing.MockClock) -> None:
    names = ["a", "b", "c"]
    first, second = rank_pools(BID, [(n, 1.0) for n in names])[:2]
    started = {first: trio.Event(), second: trio.Event()}
    pools: dict[str, Pool] = {n: MemoryPool(n) for n in names}
    pools[first] = RendezvousPool(first, started, second)
    pools[second] = RendezvousPool(second, started, first)
    store = ReplicatedStore(PoolSet(pools, dict.fromkeys(names, 1.0), replicas=2, write_quorum=2, op_timeout=None))
    with trio.fail_after(10):  # one put after the other would wait here forever
        assert await store.put_block(BID, OBJ) == [first, second]


# --- reads ----------------------------------------------------------------------------------


@pytest.mark.trio
async def test_read_from_the_first_usable_holder_only() -> None:
    ps, store, _, log = make_store(4)
    holders = await store.put_block(BID, OBJ)
    log.clear()
    assert await store.get_block(BID, list(reversed(holders)), decode) == SECRET
    assert log == [(holders[0], "get")]
    ps.set_state(holders[0], PoolState.DOWN)  # an unusable pool is not read
    log.clear()
    assert await store.get_block(BID, holders, decode) == SECRET
    assert log == [(holders[1], "get")]
    assert store.repairs == 0


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.trio
async def test_bad_copy_is_read_elsewhere_and_repaired(caplog: pytest.LogCaptureFixture, damage: str) -> None:
    _, store, pools, _ = make_store(4)
    holders = await store.put_block(BID, OBJ)
    if damage == "missing":
        del pools[holders[0]].objects[KEY]
    else:
        pools[holders[0]].corrupt(KEY)
    with caplog.at_level(logging.WARNING):
        assert await store.get_block(BID, holders, decode) == SECRET
    assert pools[holders[0]].objects[KEY] == OBJ
    assert store.repairs == 1
    assert f"repaired block {SHORT} on pool {holders[0]}: was {damage}" in caplog.text
    assert SECRET.decode() not in caplog.text


@pytest.mark.trio
async def test_down_holder_is_passed_over_and_not_repaired() -> None:
    _, store, pools, log = make_store(4)
    holders = await store.put_block(BID, OBJ)
    del pools[holders[0]].objects[KEY]
    pools[holders[0]].down = True
    log.clear()
    assert await store.get_block(BID, holders, decode) == SECRET
    assert store.repairs == 0
    assert (holders[0], "put") not in log
    pools[holders[0]].down = False
    assert KEY not in pools[holders[0]].objects


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only when every task has waited 50 ms of real time (so a
    worker thread, such as decode's, finishes before the clock moves on)."""
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.mark.trio
async def test_a_hung_pool_is_hedged_and_then_suspected(patient_clock: trio.testing.MockClock) -> None:
    ps, store, pools, _ = make_store(3, op_timeout=30.0)
    holders = await store.put_block(BID, OBJ)
    pools[holders[0]].hang = True
    hedge = ps.deadline(holders[0], len(OBJ))
    assert hedge < 5.0  # sized to the work, far below op_timeout
    start = trio.current_time()
    assert await store.get_block(BID, holders, decode, size_hint=len(OBJ)) == SECRET
    took = trio.current_time() - start
    assert hedge <= took < hedge + 1.0  # the next pool was asked at the deadline; the slow read was not awaited
    # the hung pool missed nothing yet (its request was cancelled, not timed out): it is asked first again,
    # until a request to it misses its own deadline
    with pytest.raises(QuorumNotReached):  # a write to the hung pool misses its deadline (quorum 2 of 2)
        await make_quorum_write(ps, store, pools, holders[0])
    assert holders[0] in ps.suspected
    start = trio.current_time()
    assert await store.get_block(BID, holders, decode, size_hint=len(OBJ)) == SECRET
    assert trio.current_time() - start < 1.0  # a suspected pool is the last choice
    pools[holders[0]].hang = False
    await BlockCopies(ps).put_copy(holders[0], BID, OBJ)
    assert holders[0] not in ps.suspected  # answering again clears it


async def make_quorum_write(ps: PoolSet, store: ReplicatedStore, pools: Mapping[str, MemoryPool], name: str) -> None:
    """A put of another block whose targets include `name`, with write quorum 2."""
    ps.write_quorum = 2
    try:
        for i in range(200):
            bid = bytes([i]) * 32
            if name in ps.targets(bid)[:2]:
                others = [n for n in ps.ranked(bid) if n not in ps.targets(bid)[:2]]
                for other in others:  # no stand-in left: the write must miss its quorum
                    pools[other].down = True
                try:
                    await store.put_block(bid, OBJ)
                finally:
                    for other in others:
                        pools[other].down = False
                return
    finally:
        ps.write_quorum = 1


@pytest.mark.trio
async def test_block_found_on_an_unrecorded_pool(caplog: pytest.LogCaptureFixture) -> None:
    ps, store, pools, log = make_store(4)
    ranked = ps.ranked(BID)
    pools[ranked[3]].objects[KEY] = OBJ  # only the last pool of the rank has it
    recorded = ranked[:2]
    log.clear()
    with caplog.at_level(logging.WARNING):
        assert await store.get_block(BID, recorded, decode) == SECRET
    assert [name for name, _ in log if _ == "get"] == ranked  # holders first, then the rest in rank order
    assert pools[ranked[0]].objects[KEY] == OBJ and pools[ranked[1]].objects[KEY] == OBJ  # holders repaired
    assert KEY not in pools[ranked[2]].objects  # a non-holder is not written
    assert store.repairs == 2


@pytest.mark.trio
async def test_read_fails_when_no_copy_is_good() -> None:
    ps, store, pools, _ = make_store(4)
    ranked = ps.ranked(BID)
    holders = await store.put_block(BID, OBJ)
    pools[holders[0]].corrupt(KEY)
    pools[holders[1]].down = True
    ps.set_state(ranked[3], PoolState.DOWN)
    with pytest.raises(ReadFailed) as info:
        await store.get_block(BID, [*holders, "gone"], decode)
    msg = str(info.value)
    assert SHORT in msg and SECRET.decode() not in msg
    assert f"{holders[0]} (corrupt: checksum mismatch)" in msg
    assert f"{holders[1]} (unavailable: pool {holders[1]} is down)" in msg
    assert f"{ranked[2]} (missing)" in msg
    assert "gone (unknown pool)" in msg
    assert store.repairs == 0


# --- deletes, metadata objects, usage -------------------------------------------------------


@pytest.mark.trio
async def test_delete_block(caplog: pytest.LogCaptureFixture) -> None:
    ps, store, pools, _ = make_store(4, replicas=3)
    holders = await store.put_block(BID, OBJ)
    pools[holders[1]].down = True
    ps.set_state(holders[2], PoolState.DOWN)
    with caplog.at_level(logging.WARNING):
        assert await store.delete_block(BID, holders) == holders[1:]
    assert holding(pools) == set(holders[1:])
    assert f"pool {holders[1]}" in caplog.text
    pools[holders[1]].down = False
    ps.set_state(holders[2], PoolState.UP)
    assert await store.delete_block(BID, holders) == []
    assert holding(pools) == set()


@pytest.mark.trio
async def test_put_meta_to_every_pool_or_some_and_get_from_one() -> None:
    ps, _, pools, _ = make_store(3)
    objects = MetaObjects(ps)
    assert await objects.put_meta(SUPERBLOCK_KEY, b"sb") == list(pools)
    assert holding(pools, SUPERBLOCK_KEY) == set(pools)
    assert await objects.get_from("p2", SUPERBLOCK_KEY) == b"sb"
    del pools["p1"].objects[SUPERBLOCK_KEY]
    with pytest.raises(ObjectNotFound, match="p1"):
        await objects.get_from("p1", SUPERBLOCK_KEY)
    ps.set_state("p0", PoolState.DOWN)
    with pytest.raises(PoolUnavailable, match="p0"):
        await objects.get_from("p0", SUPERBLOCK_KEY)
    ps.set_state("p0", PoolState.UP)
    pools["p1"].down = True
    assert await objects.put_meta("journal/x", b"j") == ["p0", "p2"]  # the write quorum is 1
    assert len(await objects.put_meta("journal/y", b"j", copies=2)) == 2  # p1 down: a stand-in
    for p in pools.values():
        p.down, p.full = False, True
    with pytest.raises(MetaNoSpace, match="journal/z") as full:
        await objects.put_meta("journal/z", b"j")
    assert isinstance(full.value, StorageError) and full.value.errno == errno.ENOSPC  # the journal retries it


@pytest.mark.trio
async def test_usage_leaves_out_unreachable_pools() -> None:
    ps, store, pools, _ = make_store(3)
    await store.put_block(BID, OBJ)
    pools["p1"].down = True
    usage = await ps.usage()
    assert list(usage) == ["p0", "p2"]
    assert sum(u.used for u in usage.values()) == len(OBJ) * len(holding(pools) - {"p1"})
    await ps.close()


def test_bad_construction() -> None:
    pools = {"a": MemoryPool("a"), "b": MemoryPool("b")}
    with pytest.raises(ValueError, match="different pools"):
        PoolSet(pools, {"a": 1.0}, replicas=1, write_quorum=1)
    with pytest.raises(ValueError, match="write_quorum"):
        PoolSet(pools, {"a": 1.0, "b": 1.0}, replicas=1, write_quorum=2)
    with pytest.raises(ValueError, match="another name"):
        PoolSet({"a": MemoryPool("x")}, {"a": 1.0}, replicas=1, write_quorum=1)
    with pytest.raises(ValueError, match="weight"):
        PoolSet(pools, {"a": 1.0, "b": 0.0}, replicas=1, write_quorum=1)
    ps = PoolSet(pools, {"a": 1.0, "b": 1.0}, replicas=1, write_quorum=1)
    with pytest.raises(ValueError, match="no pool named 'c'"):
        ps.set_state("c", PoolState.DOWN)


# --- the retry helper -------------------------------------------------------------------------


class Flaky:
    def __init__(self, failures: int, exc: Exception) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    async def __call__(self) -> str:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise self.exc
        return "done"


def transient(exc: Exception) -> bool:
    return isinstance(exc, PoolUnavailable)


@pytest.mark.trio
async def test_retry_backs_off_within_bounds(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(3, PoolUnavailable("p"))
    start = trio.current_time()
    assert await retry(fn, attempts=4, base_delay=1.0, max_delay=2.5, is_transient=transient) == "done"
    assert fn.calls == 4
    assert trio.current_time() - start <= 1.0 + 2.0 + 2.5


@pytest.mark.parametrize(("exc", "calls"), [(PoolUnavailable("p"), 3), (PoolFull("p"), 1)])
@pytest.mark.trio
async def test_retry_gives_up(autojump_clock: trio.testing.MockClock, exc: Exception, calls: int) -> None:
    fn = Flaky(5, exc)  # transient errors: after `attempts`; others: at once
    with pytest.raises(type(exc)):
        await retry(fn, attempts=3, base_delay=0.1, max_delay=1.0, is_transient=transient)
    assert fn.calls == calls


@pytest.mark.trio
async def test_retry_stops_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(100, PoolUnavailable("p"))
    end = trio.current_time() + 10.0
    with pytest.raises(PoolUnavailable):
        await retry(fn, attempts=1000, base_delay=1.0, max_delay=4.0, deadline=end, is_transient=transient)
    assert trio.current_time() <= end
    assert 3 <= fn.calls < 100
