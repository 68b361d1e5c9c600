"""Blocks a writer fills in order are not kept in the cache once stored, and their files
become zeroed spares that new blocks are made from (repfs/cache/blockcache.py): a block
made from a spare reads as zeros where nothing was written, stores exactly its data, and
a file left longer than its block by a crash is cut at the next start."""

from __future__ import annotations

import os

import pytest
import trio

from repfs.meta.schema import ROOT_INO
from tests.fs.rig import BS, ROOT, Rig, read_file, write_file

pytestmark = pytest.mark.trio


async def zeroed(r: Rig) -> None:
    """Wait for the spares being zeroed in worker threads (bounded: a hang fails the test)."""
    with trio.fail_after(5):
        await r.cache.spares_settled()


def spares(r: Rig) -> dict[int, bytes]:
    """The ready spares, by inode number of their file, with their content."""
    root = r.cache.root / "spare"
    return {p.stat().st_ino: p.read_bytes() for p in root.iterdir() if not p.name.startswith(".")}


def cache_files(r: Rig, ino: int, sub: str) -> dict[int, int]:
    """The inode's cache files in `sub` (clean, dirty): block index -> inode number of the file."""
    root = r.cache.root / sub
    return {int(p.name.split("-")[1]): p.stat().st_ino for p in root.iterdir() if p.name.startswith(f"{ino}-")}


async def write_in_order(r: Rig, name: bytes, data: bytes, piece: int = 16 * 1024) -> int:
    fh, inode = r.fs.create(ROOT, ROOT_INO, name, 0o644, os.O_RDWR)
    for off in range(0, len(data), piece):  # as cp writes
        await r.fs.write(fh, off, data[off : off + piece])
    await r.fs.fsync(fh)
    r.fs.release(fh)
    return inode.ino


async def test_full_blocks_written_in_order_are_not_kept_and_become_zeroed_spares(rig: Rig) -> None:
    rig.cache.max_spare = 4 * BS
    data = os.urandom(3 * BS + 100)
    ino = await write_in_order(rig, b"copied", data)
    await zeroed(rig)
    assert rig.cache.indexes(ino) == [3]  # only the partial tail is kept
    assert set(cache_files(rig, ino, "clean")) == {3}
    got = spares(rig)
    assert got and all(content == bytes(BS) for content in got.values())
    assert len(got) + rig.cache.spares_taken == 3  # later blocks of the file may have taken some
    assert rig.cache.spare_bytes == len(got) * BS
    fetched = rig.blocks.stats["fetched"]
    assert await read_file(rig, ino) == data  # read back from the pools
    assert rig.blocks.stats["fetched"] == fetched + 3


async def test_blocks_written_out_of_order_are_kept(rig: Rig) -> None:
    data = os.urandom(2 * BS)
    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"backwards", 0o644, os.O_RDWR)
    await rig.fs.write(fh, BS, data[BS:])  # the second block first, then the first
    await rig.fs.write(fh, 0, data[:BS])
    await rig.fs.fsync(fh)
    rig.fs.release(fh)
    assert set(cache_files(rig, inode.ino, "clean")) == {0, 1}
    assert spares(rig) == {}
    fetched = rig.blocks.stats["fetched"]
    assert await read_file(rig, inode.ino) == data
    assert rig.blocks.stats["fetched"] == fetched


async def test_a_block_made_from_a_spare_reads_zeros_where_nothing_was_written(rig: Rig) -> None:
    rig.cache.max_spare = 4 * BS
    secret = os.urandom(2 * BS)  # someone's data: its blocks' files become spares
    await write_in_order(rig, b"secret", secret)
    await zeroed(rig)
    before = spares(rig)
    assert before and rig.cache.spares_taken + len(before) == 2
    taken = rig.cache.spares_taken
    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"sparse", 0o644, os.O_RDWR)
    await rig.fs.write(fh, 1000, b"hello")  # a new block, nothing written before offset 1000
    made = cache_files(rig, inode.ino, "dirty")
    assert made[0] in before  # the block's file is one of the spares
    assert rig.cache.spares_taken == taken + 1
    want = bytes(1000) + b"hello"
    assert await rig.fs.read(fh, 0, BS) == want
    await rig.fs.fsync(fh)
    rig.fs.release(fh)
    assert rig.blocks.mapped_size(inode.ino, 0) == len(want)  # its data, not the spare's length
    rig.cache.drop(inode.ino)
    assert await read_file(rig, inode.ino) == want


async def test_a_file_longer_than_its_block_is_cut_when_adopted_after_a_crash(rig: Rig) -> None:
    ino = await write_file(rig, b"tail", b"x" * 100)
    rig.cache.drop(ino)
    left = rig.cache.root / "dirty" / f"{ino}-0"
    left.write_bytes(b"y" * 100 + bytes(BS - 100))  # a spare's zeros past the data
    (rig.cache.root / "spare" / "7").write_bytes(bytes(BS))
    assert rig.cache.recover_dirty(lambda i, index: 100 if (i, index) == (ino, 0) else 0) == 1
    assert left.stat().st_size == 100
    assert rig.cache.entries[(ino, 0)].size == 100
    assert list((rig.cache.root / "spare").iterdir()) == []
    await rig.cache.flush(ino)
    rig.cache.drop(ino)
    assert await read_file(rig, ino) == b"y" * 100
    assert rig.blocks.mapped_size(ino, 0) == 100


async def test_a_fetched_block_is_written_into_a_spare_cut_to_its_length(rig: Rig) -> None:
    rig.cache.max_spare = 4 * BS
    rig.cache.max_bytes = 64 * BS  # a quarter of it is over the file below: a cached read, not streamed
    data = os.urandom(BS + 5000)
    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"fetched", 0o644, os.O_RDWR)
    await rig.fs.write(fh, BS, data[BS:])  # out of order: both blocks are kept...
    await rig.fs.write(fh, 0, data[:BS])
    await rig.fs.fsync(fh)
    rig.fs.release(fh)
    rig.cache.drop(inode.ino)  # ...and dropped: their files become spares (the tail's is too short)
    await zeroed(rig)
    before = spares(rig)
    assert len(before) == 1
    assert await read_file(rig, inode.ino) == data
    made = cache_files(rig, inode.ino, "clean")
    assert made[0] in before and rig.cache.spares_taken == 1
    assert (rig.cache.root / "clean" / f"{inode.ino}-0").stat().st_size == BS
