"""One contract, every pool: the same tests run over each `Pool` implementation.

A new pool type joins by adding a branch to the `pool` fixture; tests specific to one
implementation (fault knobs, directory layout) follow the common suite. The S3 pool runs
against two real servers, SeaweedFS and Ceph RGW (each shared by the session, a fresh
bucket per test, keys under a prefix); its own tests are in tests/s3/.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from repfs.backend import directio
from repfs.backend.base import Pool, PoolUsage
from repfs.backend.credentials import Credentials
from repfs.backend.keys import BLOCK_PREFIX, SUPERBLOCK_KEY, TEMP_PREFIX, block_id_from_key, block_key
from repfs.backend.local import LocalPool
from repfs.backend.memory import MemoryPool
from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.s3 import S3Pool
from repfs.config import PoolSpec
from repfs.errors import CorruptObject, ObjectNotFound, PoolFull, PoolUnavailable
from tests.ceph import shared_cluster
from tests.s3.rig import S3Server
from tests.seaweed import shared_servers

KEY = block_key(bytes(range(32)))
OTHER = block_key(b"\xff" * 32)


@pytest.fixture(params=["local", "memory", "s3-seaweed", "s3-ceph"])
async def pool(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pool]:
    p: Pool
    server: S3Server | None = None
    if request.param == "local":
        root = tmp_path / "pool"
        root.mkdir()
        p = LocalPool("p1", root)
    elif request.param.startswith("s3-"):
        base = tmp_path_factory.getbasetemp()
        server = shared_cluster(base) if request.param == "s3-ceph" else shared_servers(base)[0]
        spec = PoolSpec("p1", server.url(server.make_bucket(), "fs/one"), capacity=1 << 30)
        p = S3Pool.from_spec(spec, Credentials(server.access_key, server.secret_key, "test"))
    else:
        p = MemoryPool("p1")
    yield p
    await p.close()
    if server is not None:
        server.drop_buckets()


async def keys_of(pool: Pool, prefix: str = "") -> set[str]:
    return {k async for k in pool.list(prefix)}


# --- keys -----------------------------------------------------------------------------


def test_block_key_layout_and_inverse() -> None:
    bid = bytes.fromhex("ab01") + b"\x00" * 30
    assert block_key(bid) == f"blocks/ab/{bid.hex()}"
    assert block_key(bid).startswith(BLOCK_PREFIX)
    assert block_id_from_key(block_key(bid)) == bid


@pytest.mark.parametrize("key", ["superblock", "blocks/ab/cd", "blocks/ab/abzz", "blocks/abcd", "blocks/ab/"])
def test_block_id_from_key_refuses_other_keys(key: str) -> None:
    with pytest.raises(ValueError, match="not a block key"):
        block_id_from_key(key)


# --- the common contract ----------------------------------------------------------------


@pytest.mark.trio
async def test_implements_protocol(pool: Pool) -> None:
    assert isinstance(pool, Pool)
    assert pool.name == "p1"
    assert "://" in pool.url


@pytest.mark.trio
async def test_put_get_exists_delete(pool: Pool) -> None:
    assert not await pool.exists(KEY)
    await pool.put(KEY, b"hello")
    assert await pool.exists(KEY)
    assert await pool.get(KEY) == b"hello"
    await pool.delete(KEY)
    assert not await pool.exists(KEY)
    with pytest.raises(ObjectNotFound, match="p1"):
        await pool.get(KEY)


@pytest.mark.trio
async def test_empty_and_large_objects(pool: Pool) -> None:
    big = os.urandom(3 * 1024 * 1024 + 7)
    await pool.put(KEY, b"")
    await pool.put(OTHER, big)
    assert await pool.get(KEY) == b""
    assert await pool.get(OTHER) == big


@pytest.mark.trio
async def test_ranges_of_an_object(pool: Pool) -> None:
    """A block inside a pack is read by its range: exactly those bytes, or a clear error."""
    data = os.urandom(300_000)
    await pool.put(KEY, data)
    assert await pool.get_range(KEY, 0, 10) == data[:10]
    assert await pool.get_range(KEY, 123_456, 65_536) == data[123_456 : 123_456 + 65_536]
    assert await pool.get_range(KEY, len(data) - 5, 5) == data[-5:]
    with pytest.raises(CorruptObject, match="ends before byte 300001"):  # a truncated copy
        await pool.get_range(KEY, len(data) - 5, 6)
    with pytest.raises(CorruptObject, match="ends before"):
        await pool.get_range(KEY, len(data) + 100, 6)
    with pytest.raises(ObjectNotFound, match=OTHER):
        await pool.get_range(OTHER, 0, 1)
    with pytest.raises(ObjectNotFound):  # a directory of keys is no object either
        await pool.get_range(BLOCK_PREFIX + KEY.split("/")[1], 0, 1)
    for offset, length in ((0, 0), (-1, 5)):
        with pytest.raises(ValueError, match="invalid range"):
            await pool.get_range(KEY, offset, length)


@pytest.mark.trio
async def test_missing_key(pool: Pool) -> None:
    with pytest.raises(ObjectNotFound, match=KEY):
        await pool.get(KEY)
    assert not await pool.exists(KEY)


@pytest.mark.trio
async def test_a_directory_of_keys_is_not_a_key(pool: Pool) -> None:
    await pool.put(KEY, b"x")
    await pool.put(SUPERBLOCK_KEY, b"s")
    for prefix in ("blocks", KEY.rsplit("/", 1)[0]):
        assert not await pool.exists(prefix)
        with pytest.raises(ObjectNotFound):
            await pool.get(prefix)
    assert not await pool.exists(f"{SUPERBLOCK_KEY}/below")


@pytest.mark.trio
async def test_put_is_idempotent_and_replaces(pool: Pool) -> None:
    await pool.put(KEY, b"one")
    await pool.put(KEY, b"one")
    assert await pool.get(KEY) == b"one"
    await pool.put(KEY, b"two!")
    assert await pool.get(KEY) == b"two!"
    assert await keys_of(pool) == {KEY}


@pytest.mark.trio
async def test_delete_of_missing_key_is_fine(pool: Pool) -> None:
    await pool.delete(KEY)
    await pool.delete("blocks/zz/nothing")


@pytest.mark.trio
async def test_list_with_prefixes(pool: Pool) -> None:
    await pool.put(KEY, b"a")
    await pool.put(OTHER, b"b")
    await pool.put(SUPERBLOCK_KEY, b"s")
    assert await keys_of(pool) == {KEY, OTHER, SUPERBLOCK_KEY}
    assert await keys_of(pool, BLOCK_PREFIX) == {KEY, OTHER}
    assert await keys_of(pool, "blocks/ff") == {OTHER}
    assert await keys_of(pool, KEY) == {KEY}
    assert await keys_of(pool, "super") == {SUPERBLOCK_KEY}
    assert await keys_of(pool, "nothing/") == set()


@pytest.mark.trio
async def test_usage_counts_object_bytes(pool: Pool) -> None:
    before = await pool.usage()
    assert isinstance(before, PoolUsage)
    assert before.total > 0
    assert 0 <= before.free <= before.total
    await pool.put(KEY, b"x" * 1000)
    await pool.put(OTHER, b"y" * 24)
    assert (await pool.usage()).used == before.used + 1024
    await pool.put(KEY, b"x" * 10)  # replacing an object counts only the new one
    assert (await pool.usage()).used == before.used + 34
    await pool.delete(KEY)
    await pool.delete(KEY)
    assert (await pool.usage()).used == before.used + 24


@pytest.mark.trio
async def test_ping(pool: Pool) -> None:
    await pool.ping()


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x", "blocks/../../x", "a//b", "a/./b", "a/", "a\0b", f"blocks/{TEMP_PREFIX}x"],
)
@pytest.mark.trio
async def test_keys_that_escape_are_refused(pool: Pool, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        await pool.put(key, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        await pool.get(key)
    with pytest.raises(ValueError, match="invalid object key"):
        await pool.delete(key)
    with pytest.raises(ValueError, match="invalid object key"):
        await pool.exists(key)


@pytest.mark.trio
async def test_concurrent_puts_never_show_partial_objects(pool: Pool) -> None:
    payloads = {block_key(bytes([i]) * 32): bytes([i]) * (64 * 1024 + i) for i in range(16)}
    seen: list[set[str]] = []

    async def lister() -> None:
        for _ in range(5):
            seen.append(await keys_of(pool))

    async with trio.open_nursery() as nursery:
        for key, data in payloads.items():
            nursery.start_soon(pool.put, key, data)
        nursery.start_soon(lister)
    assert all(s <= set(payloads) for s in seen)
    assert await keys_of(pool) == set(payloads)
    for key, data in payloads.items():
        assert await pool.get(key) == data


# --- LocalPool --------------------------------------------------------------------------


@pytest.mark.trio
async def test_local_layout_and_url(tmp_path: Path) -> None:
    pool = LocalPool.from_spec(PoolSpec("disk1", f"file://{tmp_path}"))
    assert pool.name == "disk1"
    assert pool.url == f"file://{tmp_path}"
    await pool.put(KEY, b"data")
    assert (tmp_path / KEY).read_bytes() == b"data"
    assert [p.name for p in (tmp_path / KEY).parent.iterdir()] == [KEY.rsplit("/", 1)[1]]


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(f"{TEMP_PREFIX}*"))


def _cached_bytes(path: Path) -> int:
    """Bytes of `path` in the page cache (util-linux fincore)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.trio
@pytest.mark.parametrize("size", [directio.MIN_SIZE, 4 * 1024 * 1024 + 28, 3 * 1024 * 1024 + 4096])
async def test_local_large_objects_bypass_the_page_cache_and_keep_their_length(tmp_path: Path, size: int) -> None:
    pool = LocalPool("p1", tmp_path)
    big, small = os.urandom(size), os.urandom(directio.MIN_SIZE - 1)
    for _ in range(2):  # the second round reuses the aligned buffers of the first
        await pool.put(KEY, big)
        await pool.put(OTHER, small)
    assert (tmp_path / KEY).stat().st_size == size
    assert _cached_bytes(tmp_path / KEY) == 0  # written past the page cache
    assert _cached_bytes(tmp_path / OTHER) == 0  # written through it, and its pages let go once fsync'd
    assert await pool.get(KEY) == big
    assert await pool.get(OTHER) == small
    assert await pool.get_range(KEY, size - 5, 5) == big[-5:]
    assert (await pool.usage()).used == size + len(small)
    assert not _temp_files(tmp_path)


@pytest.mark.trio
async def test_local_pool_on_a_filesystem_refusing_o_direct_writes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_open = os.open
    refused: list[str] = []

    def open_without_direct(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            refused.append(str(path))
            raise OSError(errno.EINVAL, "Invalid argument")  # what such a filesystem answers
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", open_without_direct)
    pool = LocalPool("p1", tmp_path)
    big = os.urandom(2 * directio.MIN_SIZE + 1)
    with caplog.at_level(logging.INFO, logger="repfs.backend.local"):
        await pool.put(KEY, big)
        await pool.put(OTHER, big)
    assert await pool.get(KEY) == big and await pool.get(OTHER) == big
    assert len(refused) == 1  # asked once, then remembered
    assert [r.getMessage() for r in caplog.records if "O_DIRECT" in r.getMessage()] == [
        f"pool p1: {tmp_path} refuses O_DIRECT; objects go through the page cache"
    ]
    assert not _temp_files(tmp_path)


@pytest.mark.trio
async def test_local_temp_files_are_invisible(tmp_path: Path) -> None:
    pool = LocalPool("p1", tmp_path)
    await pool.put(KEY, b"good")
    leftover = (tmp_path / KEY).parent / f"{TEMP_PREFIX}crashed.123"
    leftover.write_bytes(b"half a write")
    (tmp_path / f"{TEMP_PREFIX}superblock.9").write_bytes(b"zz")
    assert await keys_of(pool) == {KEY}
    assert (await pool.usage()).used == 4


@pytest.mark.trio
async def test_local_failed_put_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = LocalPool("p1", tmp_path)
    neighbour = f"{KEY[:-1]}0"
    await pool.put(neighbour, b"first")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(PoolUnavailable, match=r"p1.*Input/output error"):
        await pool.put(KEY, b"data")
    monkeypatch.undo()
    assert not await pool.exists(KEY)
    assert [p.name for p in (tmp_path / KEY).parent.iterdir()] == [neighbour.rsplit("/", 1)[1]]


@pytest.mark.trio
async def test_local_full_disk_is_pool_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = LocalPool("p1", tmp_path)

    real_open = os.open

    def full_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if flags & os.O_CREAT and os.fspath(path).startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(PoolFull, match="pool p1 is full"):
        await pool.put(KEY, b"data")


@pytest.mark.trio
async def test_local_missing_root_is_unavailable_and_not_created(tmp_path: Path) -> None:
    root = tmp_path / "unmounted"
    pool = LocalPool("p1", root)
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.ping()
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.put(KEY, b"x")
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.get(KEY)
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.exists(KEY)
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.delete(KEY)
    with pytest.raises(PoolUnavailable, match="p1"):
        await keys_of(pool)
    with pytest.raises(PoolUnavailable, match="p1"):
        await pool.usage()
    assert not root.exists()


@pytest.mark.trio
async def test_local_create_root_for_mkfs(tmp_path: Path) -> None:
    root = tmp_path / "new" / "pool"
    pool = LocalPool("p1", root, create_root=True)
    await pool.ping()
    assert root.is_dir()
    await pool.put(SUPERBLOCK_KEY, b"sb")
    assert (root / SUPERBLOCK_KEY).read_bytes() == b"sb"


@pytest.mark.trio
async def test_local_root_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PoolUnavailable, match="not a directory"):
        await LocalPool("p1", tmp_path / "file").ping()


@pytest.mark.trio
async def test_local_usage_walks_existing_objects_once(tmp_path: Path) -> None:
    await LocalPool("p1", tmp_path).put(KEY, b"x" * 100)
    pool = LocalPool("p1", tmp_path)
    assert (await pool.usage()).used == 100
    (tmp_path / "behind-its-back").write_bytes(b"y" * 50)
    assert (await pool.usage()).used == 100  # the running count, not a new walk
    await pool.put(OTHER, b"z" * 5)
    assert (await pool.usage()).used == 105


@pytest.mark.trio
async def test_local_pools_under_a_replicated_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A copy overwritten behind repfs's back is read from the other pool and put back.
    pools: dict[str, Pool] = {n: LocalPool(n, tmp_path / n, create_root=True) for n in ("a", "b", "c")}
    poolset = PoolSet(pools, dict.fromkeys(pools, 1.0), replicas=2, write_quorum=2)
    store = ReplicatedStore(poolset)
    bid = bytes(range(32))

    def decode(obj: bytes) -> bytes:
        if obj != b"good":
            raise CorruptObject("bad")
        return obj

    holders = await store.put_block(bid, b"good")
    (tmp_path / holders[0] / block_key(bid)).write_bytes(b"evil")
    with caplog.at_level(logging.WARNING):
        assert await store.get_block(bid, holders, decode) == b"good"
    assert (tmp_path / holders[0] / block_key(bid)).read_bytes() == b"good"
    assert store.repairs == 1
    await poolset.close()


# --- MemoryPool fault knobs -------------------------------------------------------------


@pytest.mark.trio
async def test_memory_down_fails_every_call() -> None:
    pool = MemoryPool("m")
    await pool.put(KEY, b"x")
    pool.down = True
    for call in (
        pool.ping(),
        pool.get(KEY),
        pool.put(KEY, b"y"),
        pool.delete(KEY),
        pool.exists(KEY),
        pool.usage(),
        keys_of(pool),
    ):
        with pytest.raises(PoolUnavailable, match="pool m is down"):
            await call
    pool.down = False
    assert await pool.get(KEY) == b"x"


@pytest.mark.trio
async def test_memory_full_and_capacity() -> None:
    pool = MemoryPool("m", capacity=10)
    pool.full = True
    with pytest.raises(PoolFull, match="pool m"):
        await pool.put(KEY, b"x")
    pool.full = False
    await pool.put(KEY, b"x" * 10)
    with pytest.raises(PoolFull):
        await pool.put(OTHER, b"y")
    assert await pool.usage() == PoolUsage(used=10, total=10, free=0)


@pytest.mark.trio
async def test_memory_corrupt_changes_the_bytes() -> None:
    pool = MemoryPool("m")
    await pool.put(KEY, b"abcdef")
    pool.corrupt(KEY)
    data = await pool.get(KEY)
    assert data != b"abcdef"
    assert len(data) == 6
