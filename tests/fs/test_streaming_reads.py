"""Blocks fetched for a sequential reader of a big file (over a quarter of the cache) are
held in memory, not written to a cache file (repfs/cache/blockcache.py): they read back
right, stay within `max_memory`, turn into a file when written; a smaller file's blocks
and a random reader's still go to cache files, where the next reader finds them."""

from __future__ import annotations

import os

import pytest
import trio.testing

from repfs.meta.schema import ROOT_INO
from tests.fs.rig import BS, ROOT, Rig, write_file

pytestmark = pytest.mark.trio


def cache_files(r: Rig, ino: int, sub: str = "clean") -> set[int]:
    return {int(p.name.split("-")[1]) for p in (r.cache.root / sub).iterdir() if p.name.startswith(f"{ino}-")}


async def cold_file(r: Rig, name: bytes, blocks: int) -> tuple[int, bytes]:
    data = os.urandom(blocks * BS)
    ino = await write_file(r, name, data)
    await r.cache.flush_all()
    r.cache.drop(ino)
    return ino, data


async def test_a_sequential_reader_is_served_from_memory_within_its_bound(rig: Rig) -> None:
    ino, data = await cold_file(rig, b"stream", 6)
    assert rig.cache.max_memory == 2 * BS  # a quarter of the rig's 8-block cache
    fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
    got = bytearray()
    for off in range(0, len(data), 16 * 1024):  # in order, as cat reads
        got += await rig.fs.read(fh, off, 16 * 1024)
        assert rig.cache.memory_bytes <= rig.cache.max_memory
    rig.fs.release(fh)
    assert got == data
    assert cache_files(rig, ino) == set()  # nothing of it was written to a cache file
    held = {i for (n, i), e in rig.cache.entries.items() if n == ino and e.data is not None}
    assert held and len(held) <= 2 and rig.cache.memory_bytes == len(held) * BS


async def test_a_reader_of_the_first_bytes_fetches_one_block_ahead_not_the_whole_window(rig: Rig) -> None:
    ino, data = await cold_file(rig, b"head", 6)
    fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
    assert await rig.fs.read(fh, 0, 4096) == data[:4096]  # as `head` or `file` do
    await trio.testing.wait_all_tasks_blocked()  # the read-ahead has landed
    assert rig.cache.indexes(ino) == [0, 1]
    rig.fs.release(fh)


async def test_a_write_into_a_block_held_in_memory_keeps_the_rest_of_it(rig: Rig) -> None:
    ino, data = await cold_file(rig, b"edit", 3)  # over a quarter of the rig's 8-block cache
    fh = await rig.fs.open(ROOT, ino, os.O_RDWR)
    assert await rig.fs.read(fh, 0, 2 * BS) == data[: 2 * BS]
    e = rig.cache.entries[(ino, 1)]
    assert e.data is not None  # read ahead for the sequential reader, held in memory
    await rig.fs.write(fh, BS + 100, b"new bytes")
    assert e.data is None and e.dirty and cache_files(rig, ino, "dirty") == {1}
    assert rig.cache.memory_bytes == sum(x.size for x in rig.cache.entries.values() if x.data is not None)
    want = data[: BS + 100] + b"new bytes" + data[BS + 109 :]
    await rig.fs.fsync(fh)
    rig.fs.release(fh)
    rig.cache.drop(ino)
    fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
    assert await rig.fs.read(fh, 0, 3 * BS) == want
    rig.fs.release(fh)


async def test_a_file_of_a_quarter_of_the_cache_is_kept_in_cache_files(rig: Rig) -> None:
    ino, data = await cold_file(rig, b"small", 2)
    for _ in range(2):  # the second reader is served from the cache: nothing is fetched
        fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
        assert await rig.fs.read(fh, 0, 2 * BS) == data
        rig.fs.release(fh)
        assert cache_files(rig, ino) == {0, 1} and rig.cache.memory_bytes == 0
    assert rig.blocks.stats["fetched"] == 2


async def test_a_random_reader_gets_cache_files(rig: Rig) -> None:
    ino, data = await cold_file(rig, b"random", 4)
    fh = await rig.fs.open(ROOT, ino, os.O_RDONLY)
    for index in (2, 0, 3):  # not in order: each read lands away from the last one's end
        off = index * BS + 4096
        assert await rig.fs.read(fh, off, 4096) == data[off : off + 4096]
    rig.fs.release(fh)
    assert {0, 2, 3} <= cache_files(rig, ino)
    assert rig.cache.memory_bytes == 0
    rig.fs.unlink(ROOT, ROOT_INO, b"random")
