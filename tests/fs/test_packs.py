"""Packs (journal.pack, docs/FORMAT.md) on the core with memory pools: an fsync'd small
file is one object on two pools; packed blocks read back, deduplicate, are collected and
their pack pruned when dead, kept while alive, written out as their own objects when a
copy is damaged, and found again by recovery when their record named no place."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from repfs.backend.keys import BLOCK_PREFIX, JOURNAL_PREFIX, block_key
from repfs.blocks import packs
from repfs.journal.replay import rebuild
from repfs.meta.records import BlockRecord
from repfs.meta.schema import ROOT_INO
from repfs.meta.store import MetaStore
from tests.fs.rig import BS, ROOT, Rig, read_file, start_rig, write_file

pytestmark = pytest.mark.trio


@pytest.fixture
async def packed(tmp_path: Path, nursery: trio.Nursery) -> Rig:
    """The factory's stack with packs on (blocks up to 1 MiB), journal to 2 pools as mounted."""
    return await start_rig(tmp_path, nursery, pack_max=1 << 20)


def record(r: Rig, ino: int, index: int = 0) -> tuple[bytes, BlockRecord]:
    with r.meta.read() as t:
        block_id = t.block_of(ino, index)
        assert block_id is not None
        rec = t.block_record(block_id)
        assert rec is not None
        return block_id, rec


def written_since(r: Rig, t0: float) -> set[tuple[str, str]]:
    return {(n, k) for n, p in r.pools.items() for k, at in p.written.items() if at >= t0}


async def test_an_fsynced_small_file_is_one_object_on_two_pools(packed: Rig) -> None:
    await write_file(packed, b"warm-up", os.urandom(1000))
    for i in range(5):
        t0 = time.time()
        data = os.urandom(BS)
        ino = await write_file(packed, f"packet-{i}".encode(), data)  # create, write, fsync, close
        new = written_since(packed, t0)
        keys = {k for _, k in new}
        assert len(keys) == 1 and len(new) == 2, new  # ≤ 2 PUTs: the pack, on two pools
        (key,) = keys
        assert key.startswith(JOURNAL_PREFIX)
        _, rec = record(packed, ino)
        assert rec.in_pack == key and set(rec.pools) == {n for n, _ in new}
        assert not any(k.startswith(BLOCK_PREFIX) for p in packed.pools.values() for k in p.objects)
        with packed.meta.read() as t:
            u = packs.usage(t, key)
            assert u is not None and u.live_frames == 1 and u.live_bytes == rec.stored_size
        packed.cache.drop(ino)
        assert await read_file(packed, ino) == data  # by its range, from the pack


async def test_packed_blocks_deduplicate_and_are_collected_and_dead_packs_pruned(packed: Rig) -> None:
    keep, gone = os.urandom(BS), os.urandom(BS)
    kept = await write_file(packed, b"keep", keep)
    await write_file(packed, b"gone", gone)
    twin = await write_file(packed, b"twin", gone)  # the same block: one frame, two references
    _, kept_rec = record(packed, kept)
    gone_id, gone_rec = record(packed, twin)
    assert gone_rec.refcount == 2 and packed.blocks.stats["deduplicated"] == 1
    for name in (b"gone", b"twin"):
        packed.fs.unlink(ROOT, ROOT_INO, name)
    packed.fs.forget([(i, 99) for i in list(packed.fs.lookups)])
    assert await packed.blocks.collect() == 1
    with packed.meta.read() as t:
        assert t.block_record(gone_id) is None
        dead = packs.usage(t, gone_rec.in_pack)
        assert dead is not None and dead.dead
    assert any(gone_rec.in_pack in p.objects for p in packed.pools.values())  # the journal still needs it
    for _ in range(4):  # the kept snapshots move past both packs: the dead one goes, the live one stays
        await packed.layers.journal.snapshot_now()
    assert not any(gone_rec.in_pack in p.objects for p in packed.pools.values())
    assert sum(kept_rec.in_pack in p.objects for p in packed.pools.values()) == 2
    with packed.meta.read() as t:
        assert packs.usage(t, gone_rec.in_pack) is None
    packed.cache.drop(kept)
    assert await read_file(packed, kept) == keep


async def test_unmount_stores_what_its_own_prune_changed_and_stops_the_journal_first(
    packed: Rig, tmp_path: Path
) -> None:
    """The unmount's snapshot can prune a dead pack, which forgets its usage row: that change
    goes to the pools before the metadata closes, and no upload of the journal's service
    can come after the close."""
    ino = await write_file(packed, b"gone", os.urandom(BS))
    _, rec = record(packed, ino)
    packed.fs.unlink(ROOT, ROOT_INO, b"gone")
    packed.fs.forget([(i, 99) for i in list(packed.fs.lookups)])
    assert await packed.blocks.collect() == 1
    journal = packed.layers.journal  # no snapshot yet: the unmount's first one retires the pack
    assert any(rec.in_pack in p.objects for p in packed.pools.values())
    await packed.layers.close()
    assert not journal.running
    assert journal.stored == packed.meta.seq and not journal.queue
    assert not any(rec.in_pack in p.objects for p in packed.pools.values())
    out = await rebuild(tmp_path / "new", packed.layers.objects, packed.layers.objects, journal.codec)
    assert out.gap_after is None and not out.damaged
    new = MetaStore(tmp_path / "new")
    try:
        with new.read() as t:
            assert packs.usage(t, rec.in_pack) is None
    finally:
        new.close()


async def test_a_damaged_frame_is_read_elsewhere_and_the_block_written_out(packed: Rig) -> None:
    data = os.urandom(BS)
    ino = await write_file(packed, b"f", data)
    block_id, rec = record(packed, ino)
    first = packed.pools[rec.pools[0]]
    frame = bytearray(first.objects[rec.in_pack])
    frame[rec.offset + rec.stored_size // 2] ^= 1  # inside this block's frame, on one holder
    first.objects[rec.in_pack] = bytes(frame)
    packed.cache.drop(ino)
    assert await read_file(packed, ino) == data  # the other holder's frame
    assert packed.repairer.deficit() == 1  # reported: a frame cannot be put back into a pack
    assert await packed.repairer.repair_pending() == 1
    _, now = record(packed, ino)
    targets = packed.poolset.targets(block_id)
    assert now.in_pack == "" and set(now.pools) == set(targets)  # its own object now, on its targets
    assert {n for n, p in packed.pools.items() if block_key(block_id) in p.objects} == set(targets)
    with packed.meta.read() as t:
        u = packs.usage(t, rec.in_pack)
        assert u is not None and u.dead
    packed.cache.drop(ino)
    assert await read_file(packed, ino) == data and packed.repairer.deficit() == 0


async def test_a_deep_check_of_good_frames_writes_nothing(packed: Rig) -> None:
    ino = await write_file(packed, b"f", os.urandom(BS))
    block_id, rec = record(packed, ino)
    before = {n: dict(p.written) for n, p in packed.pools.items()}
    out = await packed.repairer.repair_block(block_id, deep=True)
    assert out.complete and out.copies_checked == 2 and out.repaired == 0
    assert {n: dict(p.written) for n, p in packed.pools.items()} == before
    assert record(packed, ino)[1] == rec
    sample = packed.blocks.challenge_sample(rec.pools[0], None)
    assert sample == [(block_id, rec.digest, rec.place)]
    got, why = await packed.copies.read_copy(rec.pools[0], block_id, rec.digest, rec.place)
    assert got is not None and why == ""


async def test_recovery_finds_a_packed_block_whose_record_named_no_place(packed: Rig, tmp_path: Path) -> None:
    """fsync returns once the pack is stored; the record's own update travels later. If the
    host stops in between, replay finds the block in the pack's index."""
    await packed.layers.journal.snapshot_now()
    data = os.urandom(BS)
    ino = await write_file(packed, b"f", data)
    block_id, rec = record(packed, ino)
    assert packed.layers.journal.queue  # the record's update has not gone out yet
    out = await rebuild(tmp_path / "new", packed.layers.objects, packed.layers.objects, packed.layers.journal.codec)
    assert out.gap_after is None and not out.damaged
    new = MetaStore(tmp_path / "new")
    try:
        with new.read() as t:
            found = t.block_record(block_id)
            assert found is not None and found.in_pack == rec.in_pack and found.offset == rec.offset
            assert set(found.pools) == set(rec.pools)
            u = packs.usage(t, rec.in_pack)
            assert u is not None and u.live_frames == 1
    finally:
        new.close()


async def write_together(r: Rig, files: dict[bytes, bytes]) -> dict[bytes, int]:
    """Write and fsync `files` at once, so that their blocks share one pack: the journal is
    held until every block waits to be carried."""
    journal = r.layers.journal
    inos: dict[bytes, int] = {}

    async def one(name: bytes, data: bytes) -> None:
        inos[name] = await write_file(r, name, data)

    async with trio.open_nursery() as nursery, journal._lock:  # no upload starts meanwhile
        for name, data in files.items():
            nursery.start_soon(one, name, data)
        with trio.fail_after(10):
            while len(journal.frames) < len(files):
                await trio.testing.wait_all_tasks_blocked()
    return inos


async def test_a_sparse_pack_is_compacted_into_a_new_one_and_then_pruned(packed: Rig) -> None:
    files = {f"f{i}".encode(): os.urandom(BS // 4) for i in range(6)}  # all dirty at once
    inos = await write_together(packed, files)
    old = {record(packed, ino)[1].in_pack for ino in inos.values()}
    assert len(old) == 1  # one pack carries all six
    (pack,) = old
    for name in list(files)[:4]:  # four of six frames die: under half of the bytes are live
        packed.fs.unlink(ROOT, ROOT_INO, name)
        del files[name]
    packed.fs.forget([(i, 99) for i in list(packed.fs.lookups)])
    assert await packed.blocks.collect() == 4
    compactor = packed.layers.compactor
    with packed.meta.read() as t:
        u = packs.usage(t, pack)
        assert u is not None and u.sparse and u.live_frames == 2
    assert await compactor.compact_once() == 0  # the journal still needs the pack
    for _ in range(4):
        await packed.layers.journal.snapshot_now()
    assert sum(pack in p.objects for p in packed.pools.values()) == 2  # kept: two live frames
    before = {name: record(packed, inos[name]) for name in files}
    holder = packed.pools[before[b"f4"][1].pools[0]]  # one holder's frame of f4 is damaged:
    damaged = bytearray(holder.objects[pack])  # compaction reads the other's
    damaged[before[b"f4"][1].offset + 5] ^= 1
    holder.objects[pack] = bytes(damaged)
    t0 = time.time()
    assert await compactor.compact_once() == 1
    new = written_since(packed, t0)
    after = {name: record(packed, inos[name]) for name in files}
    (moved_to,) = {rec.in_pack for _, rec in after.values()}  # both in one new pack
    assert moved_to != pack and {k for _, k in new if k == moved_to} == {moved_to}
    assert sum(k == moved_to for _, k in new) == 2  # on two pools
    for name, (block_id, rec) in after.items():
        was = before[name][1]
        assert block_id == before[name][0] and rec.digest == was.digest and rec.stored_size == was.stored_size
        assert set(rec.pools) == {n for n, k in new if k == moved_to}
    with packed.meta.read() as t:
        u_old, u_new = packs.usage(t, pack), packs.usage(t, moved_to)
        assert u_old is not None and u_old.dead
        assert u_new is not None and u_new.live_frames == 2 and not u_new.sparse
    assert compactor.stats == {"packs_compacted": 1, "frames_moved": 2}
    for _ in range(4):  # the move is in the kept snapshots now: the old pack goes
        await packed.layers.journal.snapshot_now()
    assert not any(pack in p.objects for p in packed.pools.values())
    for name, data in files.items():
        packed.cache.drop(inos[name])
        assert await read_file(packed, inos[name]) == data
    assert await compactor.compact_once() == 0
