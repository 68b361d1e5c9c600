"""The filesystem core called directly, without a mount: fast tests of most logic.

Pools are in-memory here (MemoryPool); metadata is real LMDB and the cache real files.
What a user sees through a real mount is tested in tests/mount/.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

import pytest
import trio
import trio.testing

from repfs.backend.keys import SNAPSHOT_PREFIX, block_id_from_key, block_key
from repfs.blocks import packs
from repfs.errors import FsError
from repfs.fs import namespace as ns
from repfs.fs.core import AttrChange
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import ALICE, BOB, BS, ROOT, Rig, errno_of, live_records, read_file, write_file

pytestmark = pytest.mark.trio


async def test_blocks_go_to_two_pools_and_read_back(rig: Rig) -> None:
    data = os.urandom(3 * BS + 123)
    ino = await write_file(rig, b"f", data)
    recs = live_records(rig)
    assert len(recs) == 4
    for block_id, rec in recs.items():  # each on two pools, as its own object or in a pack
        key = rec.in_pack or block_key(block_id)
        assert len(set(rec.pools)) == 2 and {n for n, p in rig.pools.items() if key in p.objects} == set(rec.pools)
    rig.cache.drop(ino)
    assert await read_file(rig, ino) == data


async def test_same_content_is_stored_once_and_freed_with_last_reference(rig: Rig) -> None:
    data = os.urandom(2 * BS)
    await write_file(rig, b"a", data)
    await write_file(rig, b"b", data)
    assert [r.refcount for r in live_records(rig).values()] == [2, 2]
    rig.fs.unlink(ROOT, ROOT_INO, b"a")
    rig.fs.forget([(i, 99) for i in list(rig.fs.lookups)])
    await rig.blocks.collect()
    assert [r.refcount for r in live_records(rig).values()] == [1, 1]
    rig.fs.unlink(ROOT, ROOT_INO, b"b")
    rig.fs.forget([(i, 99) for i in list(rig.fs.lookups)])
    assert await rig.blocks.collect() == 2
    assert live_records(rig) == {}
    assert not any(k.startswith("blocks/") for p in rig.pools.values() for k in p.objects)
    with rig.meta.read() as t:  # a pack whose frames all died goes with the journal's prune
        assert all(u.dead for _, u in packs.every(t))


async def test_holes_store_nothing_and_read_zeros(rig: Rig) -> None:
    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"sparse", 0o644, os.O_RDWR)
    await rig.fs.write(fh, 50 * BS + 7, b"end")
    await rig.fs.fsync(fh)
    assert rig.fs.getattr(inode.ino).size == 50 * BS + 10
    assert len(live_records(rig)) == 1
    rig.cache.drop(inode.ino)
    assert await rig.fs.read(fh, 10 * BS, 100) == bytes(100)
    assert await rig.fs.read(fh, 50 * BS, 10) == bytes(7) + b"end"


async def test_truncate_down_frees_blocks_and_extend_reads_zeros(rig: Rig) -> None:
    data = os.urandom(4 * BS)
    ino = await write_file(rig, b"t", data)
    assert len(live_records(rig)) == 4
    await rig.fs.setattr(ROOT, ino, AttrChange(size=BS + 10))
    fh = await rig.fs.open(ROOT, ino, os.O_RDWR)
    await rig.fs.fsync(fh)
    await rig.blocks.collect()
    assert len(live_records(rig)) == 2  # block 0, and block 1 cut to 10 bytes
    await rig.fs.setattr(ROOT, ino, AttrChange(size=3 * BS))
    rig.cache.drop(ino)
    got = await rig.fs.read(fh, 0, 3 * BS)
    assert got == data[: BS + 10] + bytes(3 * BS - BS - 10)


async def test_overwritten_block_is_deleted_after_gc(rig: Rig) -> None:
    ino = await write_file(rig, b"o", os.urandom(BS))
    old = rig.objects()
    fh = await rig.fs.open(ROOT, ino, os.O_RDWR)
    await rig.fs.write(fh, 0, os.urandom(BS))
    await rig.fs.fsync(fh)
    await rig.blocks.collect()
    assert rig.objects().isdisjoint(old)


async def test_unlinked_open_file_lives_until_forget(rig: Rig) -> None:
    data = os.urandom(BS + 5)
    ino = await write_file(rig, b"u", data)
    fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
    rig.fs.unlink(ROOT, ROOT_INO, b"u")
    assert await rig.fs.read(fh, 0, BS + 5) == data
    rig.fs.release(fh)
    rig.fs.forget([(ino, rig.fs.lookups[ino])])
    with pytest.raises(FsError) as e:
        rig.fs.getattr(ino)
    assert errno_of(e) == errno.ENOENT
    await rig.blocks.collect()
    assert rig.objects() == set()


async def test_a_file_replaced_while_the_kernel_knows_it_stays_until_forget(rig: Rig) -> None:
    # A reader resolved the name (the kernel holds the inode) and opens it after a writer
    # renamed a new file over it: the open must find the old file, as on a local disk.
    data = os.urandom(BS)
    old = await write_file(rig, b"config", data)
    await write_file(rig, b"config.new", b"new")
    rig.fs.rename(ROOT, ROOT_INO, b"config.new", ROOT_INO, b"config", 0)
    fh = await rig.fs.open(ROOT, old, os.O_RDONLY)
    assert await rig.fs.read(fh, 0, BS) == data
    rig.fs.release(fh)
    rig.fs.forget([(old, rig.fs.lookups[old])])
    with pytest.raises(FsError) as e:
        rig.fs.getattr(old)
    assert errno_of(e) == errno.ENOENT


async def test_a_block_fetched_while_its_file_is_truncated_does_not_come_back(rig: Rig) -> None:
    ino = await write_file(rig, b"t", os.urandom(3 * BS))
    rig.cache.drop(ino)  # a cold cache: block 1 must come from the pools
    fetched, go_on = trio.Event(), trio.Event()
    blocks = rig.blocks

    class HeldFetch:
        """The block layer, with a fetch that waits after reading the old content."""

        async def fetch(self, i: int, index: int) -> bytes | None:
            data = await blocks.fetch(i, index)  # the old content, read before the truncate
            fetched.set()
            await go_on.wait()
            return data

        async def store(self, i: int, index: int, data: bytes, current: Callable[[], bool]) -> None:
            await blocks.store(i, index, data, current)

    rig.cache.blocks = HeldFetch()
    rig.cache.prefetch(ino, 1)  # read-ahead, as for a sequential reader
    await fetched.wait()
    await rig.fs.setattr(ROOT, ino, AttrChange(size=0))
    rig.cache.blocks = blocks
    go_on.set()
    await trio.testing.wait_all_tasks_blocked()
    await rig.fs.setattr(ROOT, ino, AttrChange(size=3 * BS))  # whole blocks: nothing to cut
    assert await read_file(rig, ino) == bytes(3 * BS)


async def test_rename_flags_and_cycles(rig: Rig) -> None:
    a = rig.fs.mkdir(ROOT, ROOT_INO, b"a", 0o755)
    b = rig.fs.mkdir(ROOT, a.ino, b"b", 0o755)
    with pytest.raises(FsError) as e:
        rig.fs.rename(ROOT, ROOT_INO, b"a", b.ino, b"x", 0)
    assert errno_of(e) == errno.EINVAL
    await write_file(rig, b"f1", b"one")
    await write_file(rig, b"f2", b"two")
    with pytest.raises(FsError) as e:
        rig.fs.rename(ROOT, ROOT_INO, b"f1", ROOT_INO, b"f2", ns.RENAME_NOREPLACE)
    assert errno_of(e) == errno.EEXIST
    rig.fs.rename(ROOT, ROOT_INO, b"f1", ROOT_INO, b"f2", ns.RENAME_EXCHANGE)
    f2 = rig.fs.lookup(ROOT, ROOT_INO, b"f2")
    assert await read_file(rig, f2.ino) == b"one"
    rig.fs.rename(ROOT, ROOT_INO, b"a", ROOT_INO, b"c", 0)
    assert rig.fs.getattr(ROOT_INO).nlink == 3
    rig.fs.rename(ROOT, a.ino, b"b", ROOT_INO, b"b2", 0)
    assert rig.fs.getattr(a.ino).nlink == 2
    assert rig.fs.getattr(ROOT_INO).nlink == 4


async def test_readdir_positions_survive_changes(rig: Rig) -> None:
    for i in range(20):
        rig.fs.mknod(ROOT, ROOT_INO, b"n%02d" % i, stat.S_IFREG | 0o644)
    seen: list[bytes] = []
    it = rig.fs.readdir(ROOT_INO, 0)
    pos = 0
    for _ in range(10):
        pos, name, _inode = next(it)
        seen.append(name)
    for i in range(5):
        rig.fs.unlink(ROOT, ROOT_INO, b"n%02d" % (i + 12))
        rig.fs.mknod(ROOT, ROOT_INO, b"m%02d" % i, stat.S_IFREG | 0o644)
    seen += [name for _, name, _ in rig.fs.readdir(ROOT_INO, pos)]
    assert len(seen) == len(set(seen))
    assert all(b"n%02d" % i in seen for i in range(12))


async def test_permissions_are_checked_for_other_users(rig: Rig) -> None:
    home = rig.fs.mkdir(ROOT, ROOT_INO, b"home", 0o777)
    assert stat.S_IMODE(home.mode) == 0o755  # the caller's umask applies
    await rig.fs.setattr(ROOT, home.ino, AttrChange(mode=0o777))
    ino = await write_file(rig, b"secret", b"x", parent=home.ino, caller=ALICE)
    await rig.fs.setattr(ALICE, ino, AttrChange(mode=0o600))
    with pytest.raises(FsError) as e:
        await rig.fs.open(BOB, ino, os.O_RDONLY)
    assert errno_of(e) == errno.EACCES
    with pytest.raises(FsError) as e:
        await rig.fs.setattr(BOB, ino, AttrChange(mode=0o666))
    assert errno_of(e) == errno.EPERM
    await rig.fs.setattr(ROOT, home.ino, AttrChange(mode=0o1777))
    with pytest.raises(FsError) as e:
        rig.fs.unlink(BOB, home.ino, b"secret")
    assert errno_of(e) == errno.EPERM
    rig.fs.unlink(ALICE, home.ino, b"secret")


@pytest.mark.standalone  # read repair rewrites a block object; a frame is written out (test_packs)
async def test_writes_go_on_while_a_pool_is_down_and_reads_repair(rig: Rig) -> None:
    rig.pools["p0"].down = True
    data = os.urandom(3 * BS)
    ino = await write_file(rig, b"d", data)
    assert not any(k.startswith("blocks/") for k in rig.pools["p0"].objects)
    assert sum(1 for p in rig.pools.values() for k in p.objects if k.startswith("blocks/")) == 6
    rig.pools["p0"].down = False
    victim = next(k for k in rig.pools["p1"].objects if k.startswith("blocks/"))
    # corrupt the copy a read tries first: the first holder in the block's priority order
    first = next(n for n in rig.poolset.ranked(block_id_from_key(victim)) if victim in rig.pools[n].objects)
    rig.pools[first].corrupt(victim)
    bad = rig.pools[first].objects[victim]
    rig.cache.drop(ino)
    assert await read_file(rig, ino) == data
    assert rig.pools[first].objects[victim] != bad
    assert rig.store.repairs == 1


async def test_writers_wait_for_room_instead_of_failing(rig: Rig) -> None:
    data = os.urandom(20 * BS)  # five times max_dirty
    ino = await write_file(rig, b"big", data)
    assert rig.cache.dirty_bytes == 0
    rig.cache.drop(ino)
    assert await read_file(rig, ino) == data


async def test_names_and_errors(rig: Rig) -> None:
    with pytest.raises(FsError) as e:
        rig.fs.mknod(ROOT, ROOT_INO, b"x" * 256, stat.S_IFREG | 0o644)
    assert errno_of(e) == errno.ENAMETOOLONG
    rig.fs.mknod(ROOT, ROOT_INO, b"x" * 255, stat.S_IFREG | 0o644)
    d = rig.fs.mkdir(ROOT, ROOT_INO, b"d", 0o755)
    rig.fs.mknod(ROOT, d.ino, b"f", stat.S_IFREG | 0o644)
    with pytest.raises(FsError) as e:
        rig.fs.rmdir(ROOT, ROOT_INO, b"d")
    assert errno_of(e) == errno.ENOTEMPTY
    with pytest.raises(FsError) as e:
        rig.fs.unlink(ROOT, ROOT_INO, b"d")
    assert errno_of(e) == errno.EISDIR
    with pytest.raises(FsError) as e:
        rig.fs.lookup(ROOT, ROOT_INO, b"nope")
    assert errno_of(e) == errno.ENOENT
    with pytest.raises(FsError) as e:
        rig.fs.mkdir(ROOT, ROOT_INO, b"d", 0o755)
    assert errno_of(e) == errno.EEXIST


async def test_xattrs(rig: Rig) -> None:
    ino = await write_file(rig, b"x", b"data")
    rig.fs.setxattr(ROOT, ino, b"user.colour", b"blue")
    assert rig.fs.getxattr(ROOT, ino, b"user.colour") == b"blue"
    assert rig.fs.listxattr(ROOT, ino) == [b"user.colour"]
    rig.fs.removexattr(ROOT, ino, b"user.colour")
    with pytest.raises(FsError) as e:
        rig.fs.getxattr(ROOT, ino, b"user.colour")
    assert errno_of(e) == errno.ENODATA
    with pytest.raises(FsError) as e:
        rig.fs.getxattr(ROOT, ino, b"security.selinux")
    assert errno_of(e) == errno.ENODATA


async def test_a_block_truncated_away_while_being_stored_is_not_mapped(rig: Rig) -> None:
    data = os.urandom(2 * BS)
    ino = await write_file(rig, b"f", data)
    before = rig.objects()
    late = os.urandom(BS)  # an upload that finishes after its block was truncated away
    await rig.blocks.store(ino, 1, late, lambda: False)
    assert await read_file(rig, ino) == data
    assert rig.objects() == before  # neither mapped nor stored
    with rig.meta.read() as t:
        assert t.block_record(rig.blocks.codec.block_id(late)) is None


async def test_st_blocks_counts_data_and_takes_a_huge_file_as_dense(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from repfs.fs import core

    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"sparse", 0o644, os.O_RDWR)
    for i in range(6):
        await rig.fs.write(fh, i * BS, os.urandom(BS))
    await rig.fs.setattr(ROOT, inode.ino, AttrChange(size=100 * BS), fh)
    await rig.fs.fsync(fh)
    assert rig.fs.allocated(rig.fs.getattr(inode.ino)) == 6 * BS  # the 94 blocks of hole count nothing
    monkeypatch.setattr(core, "ALLOCATED_SCAN", 4)
    assert rig.fs.allocated(rig.fs.getattr(inode.ino)) == 100 * BS  # past the scan: taken as dense
    await rig.fs.setattr(ROOT, inode.ino, AttrChange(size=1 << 50), fh)  # 1 PiB: still one short scan
    assert rig.fs.allocated(rig.fs.getattr(inode.ino)) == 1 << 50
    rig.fs.release(fh)


async def test_an_fsync_is_not_held_up_by_a_snapshot_under_way(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's service takes its snapshots in a task of their own: while one is stuck
    in its prune (the listing of snapshots does not answer), fsync'd files still get their
    segments; the snapshot finishes once the listing answers."""
    listing, waiting, pruned = trio.Event(), trio.Event(), trio.Event()
    for pool in rig.pools.values():
        real = pool.list

        async def held(prefix: str = "", real: Callable[..., object] = real) -> object:
            if prefix == SNAPSHOT_PREFIX:
                waiting.set()
                await listing.wait()
            async for key in real(prefix):  # type: ignore[attr-defined]
                yield key

        monkeypatch.setattr(pool, "list", held)
    journal = rig.layers.journal
    journal.snapshot_every = 1  # the next round takes one
    compact = journal.after_prune
    journal.after_prune = lambda: (compact(), pruned.set())[0]
    await write_file(rig, b"first", b"1" * 100)
    with trio.fail_after(5):
        await waiting.wait()  # the snapshot is stored; its prune waits
    assert not pruned.is_set()
    with trio.fail_after(5):  # its segment was stored: fsync returned
        ino = await write_file(rig, b"second", b"2" * 100)
    assert not pruned.is_set()
    listing.set()
    with trio.fail_after(5):
        await pruned.wait()
    assert await read_file(rig, ino) == b"2" * 100
