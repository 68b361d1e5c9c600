"""The filesystem core without a mount: MemoryPools, real LMDB, real cache files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from repfs.backend.copies import BlockCopies
from repfs.backend.memory import MemoryPool
from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.blocks.manager import BlockManager
from repfs.cache.blockcache import BlockCache
from repfs.codec.superblock import Superblock
from repfs.config import FsConfig, PoolSpec
from repfs.errors import FsError
from repfs.fs import namespace as ns
from repfs.fs.access import Caller
from repfs.fs.core import Filesystem
from repfs.fs.repair import Repairer
from repfs.meta.records import BlockRecord
from repfs.meta.schema import ROOT_INO
from repfs.meta.store import MetaStore
from repfs.stack import Layers, StackOptions, build_stack
from repfs.volume import FsPaths, OpenedFs

BS = 64 * 1024
PACK_MAX = 1 << 20  # `--pack-max 1M`
ROOT = Caller(0, 0)
ALICE = Caller(1000, 1000)
BOB = Caller(1001, 1001)


@dataclass
class Rig:
    layers: Layers
    pools: dict[str, MemoryPool]

    @property
    def fs(self) -> Filesystem:
        return self.layers.fs

    @property
    def poolset(self) -> PoolSet:
        return self.layers.poolset

    @property
    def copies(self) -> BlockCopies:
        return self.layers.copies

    @property
    def store(self) -> ReplicatedStore:
        return self.layers.store

    @property
    def blocks(self) -> BlockManager:
        return self.layers.blocks

    @property
    def cache(self) -> BlockCache:
        return self.layers.cache

    @property
    def meta(self) -> MetaStore:
        return self.layers.meta

    @property
    def repairer(self) -> Repairer:
        return self.layers.repairer

    def objects(self) -> set[str]:
        return {k for p in self.pools.values() for k in p.objects if k.startswith("blocks/")}


async def start_rig(tmp_path: Path, nursery: trio.Nursery, *, pack_max: int) -> Rig:
    """The stack the factory builds for a mount, on memory pools, with its cache and its
    journal running: fsync takes the production path. `pack_max`: StackOptions.pack_max."""
    pools = {f"p{i}": MemoryPool(f"p{i}") for i in range(3)}
    specs = tuple(PoolSpec(name, f"file://{tmp_path}/{name}") for name in pools)
    config = FsConfig(pools=specs, replicas=2, write_quorum=1, block_size=BS)
    superblock, data_key = Superblock.create(b"secret-for-tests", BS)
    opened = OpenedFs(FsPaths(tmp_path / "fs"), config, superblock, data_key, dict(pools))
    (tmp_path / "fs").mkdir()
    opts = StackOptions(cache_size=8 * BS, max_dirty=4 * BS, idle_seconds=0.05, pack_max=pack_max)
    layers = build_stack(opened, opts, retry_base_delay=0.001)
    with layers.meta.write() as t:
        ns.make_root(t, 0, 0)
        t.inode(ROOT_INO)
    await nursery.start(layers.cache.run)
    await nursery.start(layers.journal.run)
    return Rig(layers, pools)


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery) -> Rig:
    """The stack with packs on (blocks up to 1 MiB travel in the journal's packs); for a test
    marked `standalone`, every block its own object (`--pack-max 0`, and what blocks bigger
    than it get): the tests of block objects, their placement and their repair."""
    standalone = request.node.get_closest_marker("standalone") is not None
    return await start_rig(tmp_path, nursery, pack_max=0 if standalone else PACK_MAX)


def live_records(r: Rig) -> dict[bytes, BlockRecord]:
    """Every block record still referenced, by block id (whether the block is its own
    object or in a pack)."""
    with r.meta.read() as t:
        recs = {k: BlockRecord.unpack(v) for k, v in t.scan("blocks", b"")}
    return {k: rec for k, rec in recs.items() if rec.refcount > 0}


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
