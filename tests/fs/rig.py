"""The filesystem core without a mount: MemoryPools, real LMDB, real cache files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from repfs.backend.memory import MemoryPool
from repfs.backend.replicated import ReplicatedStore
from repfs.cache.blockcache import BlockCache
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.errors import FsError
from repfs.fs import namespace as ns
from repfs.fs.access import Caller
from repfs.fs.blocks import BlockManager
from repfs.fs.core import Filesystem
from repfs.fs.repair import Repairer
from repfs.meta.schema import ROOT_INO
from repfs.meta.store import MetaStore

BS = 64 * 1024
ROOT = Caller(0, 0)
ALICE = Caller(1000, 1000)
BOB = Caller(1001, 1001)


@dataclass
class Rig:
    fs: Filesystem
    pools: dict[str, MemoryPool]
    store: ReplicatedStore
    blocks: BlockManager
    cache: BlockCache
    meta: MetaStore
    repairer: Repairer

    def objects(self) -> set[str]:
        return {k for p in self.pools.values() for k in p.objects if k.startswith("blocks/")}


@pytest.fixture
async def rig(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Rig]:
    pools = {f"p{i}": MemoryPool(f"p{i}") for i in range(3)}
    store = ReplicatedStore(pools, dict.fromkeys(pools, 1.0), replicas=2, write_quorum=1, retry_base_delay=0.001)
    meta = MetaStore(tmp_path / "meta")
    with meta.write() as t:
        ns.make_root(t, 0, 0)
        t.inode(ROOT_INO)
    codec = BlockCodec(derive_keys(b"k" * 32))
    cpu = trio.CapacityLimiter(2)
    blocks = BlockManager(meta, codec, store, block_size=BS, cpu=cpu)
    cache = BlockCache(
        tmp_path / "cache",
        block_size=BS,
        max_bytes=8 * BS,
        max_dirty=4 * BS,
        fetch=blocks.fetch,
        store=blocks.store_block,
        idle_seconds=0.05,
    )
    fs = Filesystem(meta, blocks, cache, block_size=BS, usage=store.usage, replicas=2, no_space=store.no_space)
    await nursery.start(cache.run)
    yield Rig(fs, pools, store, blocks, cache, meta, Repairer(meta, store, blocks.locks))


async def write_file(r: Rig, name: bytes, data: bytes, *, parent: int = ROOT_INO, caller: Caller = ROOT) -> int:
    fh, inode = r.fs.create(caller, parent, name, 0o644, os.O_RDWR)
    await r.fs.write(fh, 0, data)
    await r.fs.fsync(fh)
    r.fs.release(fh)
    return inode.ino


async def read_file(r: Rig, ino: int, caller: Caller = ROOT) -> bytes:
    fh = await r.fs.open(caller, ino, os.O_RDONLY)
    size = r.fs.getattr(ino).size
    data = await r.fs.read(fh, 0, size + 10)
    r.fs.release(fh)
    return data


def errno_of(exc: pytest.ExceptionInfo[FsError]) -> int:
    return exc.value.errno
