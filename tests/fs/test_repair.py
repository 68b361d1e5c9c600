"""Repair, scrub, challenges and full pools, on in-memory pools (fast and exact). The tests
marked `standalone` are of blocks as their own objects; packed blocks (their frames read
elsewhere and written out) are in test_packs.py."""

from __future__ import annotations

import errno
import os

import pytest
import trio
import trio.testing

from repfs.backend.health import HealthMonitor
from repfs.backend.keys import block_id_from_key, block_key
from repfs.backend.state import PoolState
from repfs.codec.superblock import Superblock
from repfs.errors import FsError
from repfs.fs.ratelimit import RateLimit
from repfs.fs.scrub import scrub
from repfs.fuse.boundary import to_errno
from repfs.meta import schema as s
from tests.fs.rig import BS, Rig, read_file, write_file

pytestmark = pytest.mark.trio


def holders(r: Rig, key: str) -> set[str]:
    return {n for n, p in r.pools.items() if key in p.objects}


def misplaced(r: Rig) -> list[str]:
    return [k for k in r.objects() if holders(r, k) != set(r.poolset.targets(block_id_from_key(k)))]


def deficit(r: Rig) -> int:
    return r.repairer.deficit()


@pytest.mark.standalone
async def test_a_block_written_while_a_target_is_down_moves_home_when_it_is_up(rig: Rig) -> None:
    rig.poolset.set_state("p0", PoolState.DOWN)
    data = os.urandom(6 * BS)
    ino = await write_file(rig, b"f", data)
    short = misplaced(rig)
    assert short and deficit(rig) == len(short)  # stand-ins took p0's copies
    assert all(len(holders(rig, k)) == 2 for k in rig.objects())  # still two copies each
    assert await rig.repairer.repair_pending() == 0  # p0 still down: nothing can complete
    rig.poolset.set_state("p0", PoolState.UP)
    assert await rig.repairer.repair_pending() == len(short)
    assert misplaced(rig) == [] and deficit(rig) == 0
    with rig.meta.read() as t:  # the records name exactly the targets
        for k in rig.objects():
            rec = t.block_record(block_id_from_key(k))
            assert rec is not None and set(rec.pools) == holders(rig, k)
    assert await read_file(rig, ino) == data


@pytest.mark.standalone
async def test_deep_repair_rewrites_damaged_and_missing_copies(rig: Rig) -> None:
    data = os.urandom(3 * BS)
    await write_file(rig, b"f", data)
    keys = sorted(rig.objects())
    a = sorted(holders(rig, keys[0]))[0]
    rig.pools[a].corrupt(keys[0])
    del rig.pools[sorted(holders(rig, keys[1]))[-1]].objects[keys[1]]
    good = {k: next(p.objects[k] for p in rig.pools.values() if k in p.objects) for k in keys[2:]}
    report = await scrub(rig.meta, rig.repairer)
    assert (report.blocks, report.repaired, report.unrecoverable) == (3, 2, 0)
    assert report.copies == 6
    for k in keys:
        copies = {bytes(rig.pools[n].objects[k]) for n in holders(rig, k)}
        assert len(holders(rig, k)) == 2 and len(copies) == 1
    assert all(rig.pools[n].objects[k] == good[k] for k in keys[2:] for n in holders(rig, k))


@pytest.mark.standalone
async def test_a_block_with_no_good_copy_is_reported_unrecoverable(rig: Rig) -> None:
    await write_file(rig, b"f", os.urandom(BS))
    (key,) = rig.objects()
    for n in holders(rig, key):
        rig.pools[n].corrupt(key)
    report = await scrub(rig.meta, rig.repairer)
    assert (report.blocks, report.repaired, report.unrecoverable) == (1, 0, 1)


async def test_scrub_resumes_where_it_stopped(rig: Rig) -> None:
    await write_file(rig, b"f", os.urandom(200 * BS))
    seen: list[tuple[int, int]] = []

    def stop_after_first_batch(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 130:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await scrub(rig.meta, rig.repairer, progress=stop_after_first_batch)
    with rig.meta.read() as t:
        assert t.get("meta", s.META_SCRUB_CURSOR) is not None
    report = await scrub(rig.meta, rig.repairer)
    assert report.resumed and report.blocks == 200 - 128  # the first batch of 128 was saved
    report = await scrub(rig.meta, rig.repairer)
    assert not report.resumed and report.blocks == 200


async def test_every_pool_full_gives_enospc_and_harms_nothing(rig: Rig) -> None:
    data = os.urandom(2 * BS)
    ino = await write_file(rig, b"kept", data)
    before = {n: dict(p.objects) for n, p in rig.pools.items()}
    for p in rig.pools.values():
        p.full = True
    with pytest.raises(BaseException) as caught:  # fsync: from the upload, maybe in a group
        await write_file(rig, b"new", os.urandom(BS))
    assert to_errno(caught.value, "fsync") == errno.ENOSPC
    assert rig.poolset.no_space()
    with pytest.raises(FsError) as info:  # now refused at write(), not only at fsync
        await write_file(rig, b"newer", os.urandom(BS))
    assert info.value.errno == errno.ENOSPC
    assert {n: dict(p.objects) for n, p in rig.pools.items()} == before
    assert await read_file(rig, ino) == data


@pytest.mark.standalone
async def test_a_full_pool_is_passed_over_for_new_blocks(rig: Rig) -> None:
    rig.pools["p1"].full = True
    await write_file(rig, b"f", os.urandom(8 * BS))
    assert rig.poolset.full("p1") and not rig.poolset.no_space()
    assert all(block_key(block_id_from_key(k)) not in rig.pools["p1"].objects for k in rig.objects())
    assert all(len(holders(rig, k)) == 2 for k in rig.objects())


def monitor(r: Rig, **kw: object) -> HealthMonitor:
    superblock, _ = Superblock.create(b"secret-for-tests", BS)
    for p in r.pools.values():
        p.objects["superblock"] = superblock.to_bytes()
    return HealthMonitor(
        r.poolset,
        r.layers.copies,
        r.pools,
        superblock,
        interval=0.05,
        quick_interval=0.01,
        challenge_source=r.blocks.challenge_sample,
        on_up=lambda _: r.repairer.wake(),
        on_failed=r.repairer.queue_pool,
        on_accepted=r.repairer.queue_return,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.standalone
async def test_down_verifying_up_and_failed(rig: Rig) -> None:
    await write_file(rig, b"f", os.urandom(6 * BS))
    health = monitor(rig, sample=None)
    rig.pools["p2"].down = True
    for _ in range(3):
        await health.check("p2")
    assert rig.poolset.state("p2") == PoolState.DOWN
    rig.pools["p2"].down = False
    assert await health.verify("p2")
    assert rig.poolset.state("p2") == PoolState.UP
    held = sorted(k for k in rig.pools["p2"].objects if k.startswith("blocks/"))
    assert held
    rig.poolset.set_state("p2", PoolState.DOWN)
    rig.pools["p2"].objects[held[0]] = b"something else"
    assert not await health.verify("p2")
    assert rig.poolset.state("p2") == PoolState.FAILED
    assert deficit(rig) == len(held)  # every block p2 held gets a copy elsewhere
    await rig.repairer.repair_pending()
    for k in held:
        good = [n for n in ("p0", "p1") if k in rig.pools[n].objects]
        assert len(good) == 2, k
    assert "p2" not in rig.poolset.targets(block_id_from_key(held[0]))
    with pytest.raises(ValueError):
        await health.clear("p0")
    # accepted as it is: up at once, and the damaged copy its challenge found is rewritten
    for k in held[1:]:  # damage the challenge never saw: accepting p2 must not trust it
        rig.pools["p2"].objects[k] = b"silently damaged"
    await health.clear("p2")
    assert rig.poolset.state("p2") == PoolState.UP
    await rig.repairer.repair_pending()
    assert deficit(rig) == 0
    assert rig.pools["p2"].objects.get(held[0]) != b"something else"
    for k in held:
        assert rig.pools["p2"].objects.get(k) != b"silently damaged", k  # read, found bad, rewritten
    for k in rig.objects():
        block_id = block_id_from_key(k)
        with rig.meta.read() as t:
            rec = t.block_record(block_id)
        assert rec is not None
        for name in rig.poolset.targets(block_id):
            got, why = await rig.copies.read_copy(name, block_id, rec.digest)
            assert got is not None, (k, name, why)
    for k in rig.objects():
        assert {n for n in rig.pools if k in rig.pools[n].objects} >= set(rig.poolset.targets(block_id_from_key(k)))


@pytest.mark.standalone
async def test_a_pool_wiped_while_up_gets_back_what_it_should_hold(rig: Rig) -> None:
    for i in range(10):  # random blocks: p1 is among the two targets of each with odds 2/3
        await write_file(rig, f"f{i}".encode(), os.urandom(6 * BS))
        if any(k.startswith("blocks/") for k in rig.pools["p1"].objects):
            break
    health = monitor(rig)
    held = {k for k in rig.pools["p1"].objects if k.startswith("blocks/")}
    assert held
    rig.pools["p1"].objects.clear()  # the superblock too
    await health.check("p1")
    assert rig.poolset.state("p1") == PoolState.UP and "superblock" in rig.pools["p1"].objects
    assert deficit(rig) >= len(held)
    await rig.repairer.repair_pending()
    assert deficit(rig) == 0
    assert held <= set(rig.pools["p1"].objects)


async def test_rate_limit_paces_callers(autojump_clock: trio.testing.MockClock) -> None:
    limit = RateLimit(1000.0)
    start = trio.current_time()
    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(limit.take, 500)
    assert trio.current_time() - start == pytest.approx(1.5)  # 2000 bytes at 1000 B/s, the first at once


async def test_a_pool_back_without_its_superblock_but_with_blocks_is_failed(rig: Rig) -> None:
    await write_file(rig, b"f", os.urandom(4 * BS))
    n = 0
    while not any(k.startswith(("blocks/", "journal/")) for k in rig.pools["p0"].objects):  # placement is by name
        await write_file(rig, b"g%d" % n, os.urandom(BS))
        n += 1
    health = monitor(rig)
    rig.pools["p0"].down = True
    for _ in range(3):
        await health.check("p0")
    assert rig.poolset.state("p0") == PoolState.DOWN
    del rig.pools["p0"].objects["superblock"]
    rig.pools["p0"].down = False
    await health.check("p0")
    assert rig.poolset.state("p0") == PoolState.FAILED
    assert "superblock" not in rig.pools["p0"].objects  # left alone
