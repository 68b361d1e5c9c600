"""The metadata journal and snapshots on in-memory pools: what recovery rebuilds is exactly
the metadata that was committed, and damage or gaps are found, never applied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from repfs.backend.keys import JOURNAL_PREFIX, SNAPSHOT_PREFIX, journal_key, parse_journal_key
from repfs.backend.memory import MemoryPool
from repfs.backend.metaobjects import MetaObjects
from repfs.backend.poolset import PoolSet
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.errors import CorruptObject, SetupError
from repfs.fs import namespace as ns
from repfs.fs.access import Caller
from repfs.journal.replay import apply_journal, catch_up, rebuild
from repfs.journal.segment import ChangeSet, decode_segment, encode_segment
from repfs.journal.writer import JournalWriter
from repfs.meta import schema as s
from repfs.meta.schema import DATABASES, ROOT_INO
from repfs.meta.store import Change, MetaStore

pytestmark = pytest.mark.trio

ROOT = Caller(0, 0)


def dump(meta: MetaStore) -> dict[str, dict[bytes, bytes]]:
    """Everything in every database, but this host's own `meta` entries."""
    out: dict[str, dict[bytes, bytes]] = {}
    with meta.read() as t:
        for db in DATABASES:
            out[db] = {k: v for k, v in t.scan(db, b"") if not (db == "meta" and k in s.LOCAL_META)}
    return out


class Lost:
    """A journal whose daemon died: the change sets never reach the pools."""

    def append(self, seq: int, changes: list[Change]) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pools = {f"p{i}": MemoryPool(f"p{i}") for i in range(3)}
        self.objects = MetaObjects(
            PoolSet(self.pools, dict.fromkeys(self.pools, 1.0), replicas=2, write_quorum=1, retry_base_delay=0.001)
        )
        self.codec = BlockCodec(derive_keys(b"j" * 32))
        self.meta = MetaStore(tmp / "meta")
        self.journal = JournalWriter(self.meta, self.objects, self.codec, cpu=trio.CapacityLimiter(2), delay=0.01)
        self.meta.journal_to(self.journal)
        with self.meta.write() as t:
            ns.make_root(t, 0, 0)

    def mkdirs(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            with self.meta.write() as t:
                ns.create_node(t, ROOT, ROOT_INO, f"d{i}".encode(), 0o40755, 0, b"")

    def keys(self, prefix: str) -> set[str]:
        return {k for p in self.pools.values() for k in p.objects if k.startswith(prefix)}


@pytest.fixture
async def rig(tmp_path: Path, nursery: trio.Nursery) -> Rig:
    r = Rig(tmp_path)
    await nursery.start(r.journal.run)
    return r


async def test_segments_round_trip_and_refuse_damage() -> None:
    sets = [ChangeSet(5, [("inodes", b"k", b"v"), ("dirents", b"d", None)]), ChangeSet(6, [])]
    data = encode_segment(sets, 123)
    seg = decode_segment(data)
    assert seg.sets == sets and seg.written_ns == 123
    for bad in (data[:-1], data + b"x", data[:10]):
        with pytest.raises(CorruptObject):
            decode_segment(bad)
    with pytest.raises(ValueError):
        encode_segment([ChangeSet(5, []), ChangeSet(7, [])])
    assert parse_journal_key(journal_key(5, 6)) == (5, 6)
    for key in ("journal/5-6", "journal/0000000000000007-0000000000000006", "blocks/x"):
        with pytest.raises(ValueError):
            parse_journal_key(key)


async def test_a_carried_block_travels_in_the_segment_as_a_pack(rig: Rig, tmp_path: Path) -> None:
    """A block carried by the journal costs no object of its own: the segment with the
    change sets becomes a pack (on every pool here: this rig's journal writes to all),
    the block is read back by its range, and recovery reads the pack as the segment it is."""
    rig.mkdirs(3)
    await rig.journal.wait_stored()
    before = {n: dict(p.objects) for n, p in rig.pools.items()}
    data = os.urandom(65_536)
    block_id = rig.codec.block_id(data)
    rig.mkdirs(1, start=3)  # the change set that would map it
    at = await rig.journal.carry(block_id, rig.codec.encode(block_id, data), urgent=True)
    new = {(n, k) for n, p in rig.pools.items() for k in p.objects if k not in before[n]}
    assert new == {(n, at.key) for n in at.pools} and len(at.pools) == 3
    assert rig.journal.stats["packs"] == 1 and rig.journal.stored == rig.meta.seq
    for name in at.pools:
        frame = await rig.pools[name].get_range(at.key, at.offset, at.length)
        assert rig.codec.decode(block_id, frame) == data
    # a block waiting with no change set queued (a snapshot took them) goes out with a carrier
    await rig.journal.snapshot_now()
    assert not rig.journal.queue
    second = os.urandom(1000)
    sid = rig.codec.block_id(second)
    again = await rig.journal.carry(sid, rig.codec.encode(sid, second), urgent=True)
    with rig.meta.read() as t:
        assert t.get("meta", s.META_PACK_CARRIER) is not None
    assert parse_journal_key(again.key)[0] > parse_journal_key(at.key)[1]
    out = await rebuild(tmp_path / "new", rig.objects, rig.objects, rig.codec)
    assert out.gap_after is None and out.last_seq == rig.meta.seq and not out.damaged
    rebuilt = MetaStore(tmp_path / "new")
    try:
        assert dump(rebuilt) == dump(rig.meta)
    finally:
        rebuilt.close()


async def test_rebuild_gives_back_exactly_what_was_committed(rig: Rig, tmp_path: Path) -> None:
    rig.mkdirs(20)
    await rig.journal.snapshot_now()
    rig.mkdirs(30, start=20)
    with rig.meta.write() as t:
        ns.unlink(t, ROOT, ROOT_INO, b"d3", rmdir=True)
        ns.setxattr(t, ROOT, ROOT_INO, b"user.note", os.urandom(500), 0)
    await rig.journal.wait_stored()
    assert rig.journal.stored == rig.meta.seq
    assert rig.keys(JOURNAL_PREFIX) and rig.keys(SNAPSHOT_PREFIX)
    out = await rebuild(tmp_path / "new", rig.objects, rig.objects, rig.codec)
    assert out.gap_after is None and out.last_seq == rig.meta.seq and out.change_sets > 30
    new = MetaStore(tmp_path / "new")
    try:
        assert dump(new) == dump(rig.meta)
        assert new.seq == rig.meta.seq
    finally:
        new.close()


async def test_a_damaged_segment_copy_is_read_from_another_pool_and_a_lost_one_is_a_gap(
    rig: Rig, tmp_path: Path
) -> None:
    await rig.journal.snapshot_now()
    for i in range(5):
        rig.mkdirs(1, start=i)
        await rig.journal.wait_stored()  # one segment each
    segments = sorted(rig.keys(JOURNAL_PREFIX), key=parse_journal_key)
    assert len(segments) >= 5
    victim = segments[2]
    holders = [p for p in rig.pools.values() if victim in p.objects]
    assert len(holders) == 3
    holders[0].corrupt(victim)
    out = await rebuild(tmp_path / "a", rig.objects, rig.objects, rig.codec)
    assert out.gap_after is None and out.last_seq == rig.meta.seq
    for p in holders:  # lost everywhere: recovery stops before it and says so
        del p.objects[victim]
    out = await rebuild(tmp_path / "b", rig.objects, rig.objects, rig.codec)
    assert out.gap_after == parse_journal_key(victim)[0] - 1
    assert out.last_seq < rig.meta.seq


async def test_mount_catches_up_with_a_journal_that_went_on_elsewhere(rig: Rig, tmp_path: Path) -> None:
    rig.mkdirs(5)
    await rig.journal.snapshot_now()
    behind = tmp_path / "behind"
    out = await rebuild(behind, rig.objects, rig.objects, rig.codec)  # another host's copy, now
    rig.mkdirs(5, start=5)  # this one goes on
    await rig.journal.wait_stored()
    other = MetaStore(behind)
    try:
        other_journal = JournalWriter(other, rig.objects, rig.codec, cpu=trio.CapacityLimiter(1))
        await catch_up(other, other_journal, rig.objects, rig.codec)
        assert dump(other) == dump(rig.meta) and out.last_seq < other.seq
        with other.write() as t:  # a change the pools never get, then the pools go on without it
            ns.create_node(t, ROOT, ROOT_INO, b"lonely", 0o40755, 0, b"")
        rig.mkdirs(2, start=10)
        await rig.journal.wait_stored()
        with pytest.raises(SetupError, match="went different ways"):
            await catch_up(other, other_journal, rig.objects, rig.codec)
    finally:
        other.close()


async def test_changes_a_crash_kept_from_the_pools_get_a_snapshot_at_mount(rig: Rig, tmp_path: Path) -> None:
    await rig.journal.snapshot_now()
    rig.meta.journal_to(Lost())  # the daemon dies before these reach the pools
    rig.mkdirs(4)
    assert rig.journal.stored < rig.meta.seq
    rig.meta.journal_to(rig.journal)
    await catch_up(rig.meta, rig.journal, rig.objects, rig.codec)
    assert rig.journal.stored == rig.meta.seq
    out = await rebuild(tmp_path / "new", rig.objects, rig.objects, rig.codec)
    assert out.snapshot_seq == rig.meta.seq
    new = MetaStore(tmp_path / "new")
    try:
        assert dump(new) == dump(rig.meta)
    finally:
        new.close()


async def test_apply_journal_applies_nothing_twice(rig: Rig, tmp_path: Path) -> None:
    rig.mkdirs(3)
    await rig.journal.snapshot_now()
    rig.mkdirs(3, start=3)
    await rig.journal.wait_stored()
    await rebuild(tmp_path / "new", rig.objects, rig.objects, rig.codec)
    new = MetaStore(tmp_path / "new")
    try:
        again = await apply_journal(new, rig.objects, rig.codec)
        assert again.change_sets == 0 and dump(new) == dump(rig.meta)
    finally:
        new.close()


async def test_blocks_the_host_died_storing_are_found_or_become_holes(rig: Rig, tmp_path: Path) -> None:
    from repfs.backend.keys import block_key
    from repfs.journal.replay import resolve_pending
    from repfs.meta.records import BlockRecord

    stored, lost = b"\x01" * 32, b"\x02" * 32
    rig.pools["p1"].objects[block_key(stored)] = b"an object"
    with rig.meta.write() as t:
        for i, block_id in enumerate((stored, lost)):
            t.put_block_record(block_id, BlockRecord(10, 9, 1, (), b"d"))
            t.map_block(7, i, block_id)
    found, gone = await resolve_pending(rig.meta, rig.objects)
    assert (found, gone) == (1, 1)
    with rig.meta.read() as t:
        rec = t.block_record(stored)
        assert rec is not None and rec.pools == ("p1",)
        assert t.block_record(lost) is None
        assert t.block_of(7, 0) == stored and t.block_of(7, 1) is None  # a hole, not a dangling reference
