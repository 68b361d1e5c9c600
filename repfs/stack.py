"""The one place the layers of a filesystem are put together.

`build_stack` wires every layer of an opened filesystem (the pool set and the three parts
over it: block store, single copies, metadata objects; metadata and its journal, block
manager, cache, filesystem core, health, repair, lease, usage, pool manager);
`open_stack` opens the filesystem first and prepares the stack for use (lease, journal
catch-up, what a crash left). Mount, scrub, fsck and the test rigs all build their stack
here, so each runs the same write and fsync path, journal included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from repfs.backend.base import Pool
from repfs.backend.copies import BlockCopies
from repfs.backend.health import HealthMonitor
from repfs.backend.metaobjects import MetaObjects
from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.usage import DEFAULT_INTERVAL as USAGE_INTERVAL
from repfs.backend.usage import UsageMonitor
from repfs.blocks.compaction import PackCompactor
from repfs.blocks.manager import BlockManager
from repfs.cache.blockcache import BlockCache
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.config import FsConfig
from repfs.control.history import DEFAULT_INTERVAL as HISTORY_INTERVAL
from repfs.control.history import PoolHistory
from repfs.control.pools import PoolManager
from repfs.errors import SetupError, StorageError
from repfs.fs import contenthash, expiry, ingest, quota
from repfs.fs.accountmanager import AccountManager
from repfs.fs.accounts import AccountBook, check_host
from repfs.fs.audit import Audit
from repfs.fs.core import Filesystem
from repfs.fs.expiry import Expirer
from repfs.fs.hasher import Hasher
from repfs.fs.kernelcache import KernelCacheQueue
from repfs.fs.locks import LockTable
from repfs.fs.ratelimit import RateLimit
from repfs.fs.repair import Repairer
from repfs.fs.sharemanager import ShareManager
from repfs.journal.replay import catch_up
from repfs.journal.writer import JournalWriter
from repfs.lease import MountLease
from repfs.meta import schema as s
from repfs.meta.migrate import migrate
from repfs.meta.store import MetaStore
from repfs.volume import OpenedFs, open_fs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackOptions:
    """How the layers below the FUSE session are sized and paced."""

    cache_dir: Path | None = None
    cache_size: int = 2 << 30
    max_dirty: int = 512 << 20
    uploads: int = 8
    idle_seconds: float = 1.0
    heartbeat: float = 10.0
    down_after: int = 3  # missed heartbeats in a row
    challenge_size: int | None = 32  # blocks checked when a pool comes back; None: all
    repair_rate: float | None = 64 << 20  # bytes/s the background repair may write
    hash_rate: float | None = 16 << 20  # bytes/s the content hasher may read
    pack_max: int = 1 << 20  # block objects up to this size travel in journal packs (journal.pack); 0: none
    history_interval: float = HISTORY_INTERVAL  # seconds between pool usage samples kept in SQL
    take_over: bool = False  # take over another host's expired lease
    break_lease: bool = False  # take the lease whatever its state
    usage_interval: float = USAGE_INTERVAL  # seconds between measurements of pool usage
    audit: bool = False  # one JSON record per file access and account action (repfs.fs.audit)
    retention_interval: float = expiry.DEFAULT_INTERVAL  # seconds between retention sweeps
    expire_rate: float | None = expiry.DEFAULT_RATE  # files/s a sweep or an eviction may remove


@dataclass
class Layers:
    """Everything a mounted filesystem is made of (also used by tests without a mount)."""

    opened: OpenedFs
    meta: MetaStore
    poolset: PoolSet
    store: ReplicatedStore  # blocks
    copies: BlockCopies  # one pool's copy of a block
    objects: MetaObjects  # journal segments, snapshots, the lease
    blocks: BlockManager
    cache: BlockCache
    fs: Filesystem
    health: HealthMonitor
    repairer: Repairer
    journal: JournalWriter
    lease: MountLease
    usage: UsageMonitor
    pools: PoolManager
    accounts: AccountManager
    kernel_cache: KernelCacheQueue
    audit: Audit
    locks: LockTable
    shares: ShareManager
    expiry: Expirer
    hasher: Hasher
    history: PoolHistory
    compactor: PackCompactor

    async def run_upkeep(self, nursery: trio.Nursery) -> None:
        """Background work that uses the metadata: garbage collection, pool health and
        usage, repair, the lease, changes of pools (resumed drains and rebalances), and
        the removal of files by retention and eviction, the content hashes of changed files,
        the pools' history in SQL, and the compaction of sparse packs."""
        await nursery.start(self.blocks.run_gc)
        await nursery.start(self.health.run)
        await nursery.start(self.repairer.run)
        await nursery.start(self.lease.run)
        await nursery.start(self.usage.run)
        await nursery.start(self.pools.run)
        await nursery.start(self.expiry.run)
        await nursery.start(self.hasher.run)
        await nursery.start(self.history.run)
        await nursery.start(self.compactor.run)

    async def store_dirty(self) -> int:
        """Store every dirty block and sync the metadata; the number of blocks left unstored.

        Blocks that cannot be stored now stay in the cache's dirty/ directory, which the
        next mount uploads (`adopt_leftovers`), so nothing is lost.
        """
        try:
            await self.fs.sync_all()
        except* StorageError as group:
            log.error("cannot store every block at unmount: %s", group.exceptions[0])
        self.meta.sync()
        unstored = self.cache.dirty_blocks()
        if unstored:
            log.error(
                "%d blocks could not be stored on the pools; they are kept in %s and stored at the next mount",
                unstored,
                self.cache.root,
            )
        return unstored

    async def close(self) -> None:
        """Free unlinked inodes, delete garbage, store the journal and a snapshot, close;
        upkeep services must be stopped."""
        await self.journal.stop()
        self.fs.purge_orphans()
        try:
            await self.blocks.collect()
        except* StorageError as group:
            log.warning("garbage collection left for the next mount: %s", group.exceptions[0])
        clean = False
        try:
            await self.journal.flush()
            await self.journal.snapshot_now()
            await self.journal.flush()  # what the prune changed (the packs it deleted)
            clean = True
        except StorageError as exc:
            log.error("cannot store the metadata journal at unmount; the next mount does: %s", exc)
        with self.meta.write() as t:
            t.put("meta", s.META_CLEAN, s.u64(int(clean)))
        self.meta.close()
        if clean:
            await self.lease.release()
        await self.poolset.close()

    async def shutdown(self) -> int:
        """`store_dirty` then `close`: for a filesystem without running services."""
        unstored = await self.store_dirty()
        await self.close()
        return unstored


def build_poolset(config: FsConfig, pools: Mapping[str, Pool], **tuning: float) -> PoolSet:
    """The pools as repfs.toml describes them (`tuning`: the timing knobs of their
    requests, for tests)."""
    return PoolSet(
        pools,
        {p.name: p.weight for p in config.pools},
        replicas=config.replicas,
        write_quorum=config.write_quorum,
        capacities={p.name: p.capacity for p in config.pools},
        thresholds={p.name: (p.warn_threshold, p.critical_threshold) for p in config.pools},
        draining=[p.name for p in config.pools if p.draining],
        **tuning,  # type: ignore[arg-type]
    )


def build_stack(opened: OpenedFs, opts: StackOptions, **tuning: float) -> Layers:
    """Every layer of an opened filesystem, wired; nothing runs yet and no pool is asked
    anything. Closes the metadata and the pools if it cannot finish."""
    config = opened.config
    keys = derive_keys(opened.data_key)
    codec = BlockCodec(keys)
    cpu = trio.CapacityLimiter(max(2, os.cpu_count() or 2))
    poolset = build_poolset(config, opened.pools, **tuning)
    store = ReplicatedStore(poolset, cpu_limiter=cpu)
    copies = BlockCopies(poolset, cpu_limiter=cpu)
    objects = MetaObjects(poolset, cpu_limiter=cpu)
    meta = MetaStore(opened.paths.meta)
    journal = JournalWriter(meta, objects, codec, cpu=cpu, copies=config.replicas)
    meta.journal_to(journal)
    blocks = BlockManager(
        meta, codec, store, poolset, block_size=config.block_size, cpu=cpu, journal=journal, pack_max=opts.pack_max
    )
    cache_dir = opts.cache_dir or opened.paths.cache
    try:
        check_cache_dir(meta, cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = cache_dir / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
        with meta.write() as t:  # only once it is known to work
            t.put("meta", s.META_CACHE_DIR, str(cache_dir).encode())
    except SetupError:
        meta.close()
        raise
    except OSError as exc:
        meta.close()
        raise SetupError(
            f"cache directory {cache_dir} is not writable: {exc.strerror}; choose another with --cache-dir"
        ) from None
    cache = BlockCache(
        cache_dir,
        block_size=config.block_size,
        max_bytes=opts.cache_size,
        max_dirty=opts.max_dirty,
        blocks=blocks,
        uploads=opts.uploads,
        idle_seconds=opts.idle_seconds,
    )
    book = AccountBook()
    audit = Audit(meta, book, enabled=opts.audit)
    locks = LockTable()
    kernel_cache = KernelCacheQueue()
    fs = Filesystem(
        meta,
        blocks,
        cache,
        block_size=config.block_size,
        space=poolset,
        replicas=config.replicas,
        accounts=book,
        audit=audit,
        locks=locks,
        kernel=kernel_cache,
        hashes=contenthash.ContentHashes(keys.content_hash_key),
    )
    repairer = Repairer(meta, poolset, copies, blocks.locks, rate=RateLimit(opts.repair_rate))
    health = HealthMonitor(
        poolset,
        copies,
        opened.pools,
        opened.superblock,
        interval=opts.heartbeat,
        down_after=opts.down_after,
        sample=opts.challenge_size,
        challenge_source=blocks.challenge_sample,
        on_accepted=_catch_up(repairer, journal),
        on_up=lambda _: repairer.wake(),
        on_failed=repairer.queue_pool,
        initially_down=opened.unreachable,
        initially_offline=[p.name for p in config.pools if p.offline],
    )
    lease = MountLease(objects, codec, os.path.abspath(opened.paths.root))
    usage = UsageMonitor(poolset, interval=opts.usage_interval)
    pools = PoolManager(opened, meta, poolset, objects, health, repairer, usage, journal)
    share_manager = ShareManager(meta, fs, kernel_cache, audit)
    accounts = AccountManager(meta, fs, book, kernel_cache, share_manager)
    expirer = Expirer(meta, fs, interval=opts.retention_interval, rate=opts.expire_rate)
    hasher = Hasher(meta, fs, fs.hashes, rate=opts.hash_rate)
    pool_history = PoolHistory(opened.paths.history, poolset, interval=opts.history_interval)
    compactor = PackCompactor(meta, journal, copies, poolset, blocks.locks)
    journal.after_prune = compactor.wake
    return Layers(
        opened, meta, poolset, store, copies, objects, blocks, cache, fs, health, repairer, journal, lease, usage,
        pools, accounts, kernel_cache, audit, locks, share_manager, expirer, hasher, pool_history, compactor,
    )  # fmt: skip


def _catch_up(repairer: Repairer, journal: JournalWriter) -> Callable[[str, bool], None]:
    """What a pool accepted as it is gets: its blocks checked (by digest, for a pool that
    had failed) and copied back, and a new metadata snapshot in place of the journal
    objects it may have lost."""

    def accepted(pool: str, verify: bool) -> None:
        repairer.queue_return(pool, verify)
        journal.snapshot_soon()

    return accepted


def check_cache_dir(meta: MetaStore, cache_dir: Path) -> None:
    """Refuse a new cache dir while the last one still holds blocks never stored (a crash)."""
    with meta.read() as t:
        raw = t.get("meta", s.META_CACHE_DIR)
    last = Path(raw.decode()) if raw else None
    if last is not None and last != cache_dir and (last / "dirty").is_dir() and any((last / "dirty").iterdir()):
        raise SetupError(
            f"{last} holds blocks written before an unclean stop and not yet stored; "
            f"mount with --cache-dir {last} once to store them"
        )


async def prepare(layers: Layers, opts: StackOptions) -> None:
    """Before serving: take the lease, agree with the pools' journal, then take over what a
    crash left."""
    await layers.lease.acquire(take_over=opts.take_over, break_lease=opts.break_lease)
    await catch_up(layers.meta, layers.journal, layers.objects, layers.journal.codec)
    # unjournaled: a snapshot puts it on the pools at once
    if migrate(layers.meta, count_usage=quota.count_all, record_ingest=ingest.record_all,
               pend_hashes=contenthash.pend_all):  # fmt: skip
        try:
            await layers.journal.snapshot_now()
        except StorageError as exc:
            log.warning("metadata snapshot after the schema migration left for later: %s", exc)
    check_host(layers.accounts.list())  # accounts are people of this host: same names, same uids
    layers.accounts.reload()
    with layers.meta.write() as t:
        t.put("meta", s.META_CLEAN, s.u64(0))
    adopt_leftovers(layers)


def adopt_leftovers(layers: Layers) -> None:
    """After a crash: upload dirty blocks the last daemon left, free its unlinked inodes."""
    bs = layers.opened.config.block_size

    def live(ino: int, index: int) -> int:
        with layers.meta.read() as t:
            inode = t.inode_or_none(ino)
        return 0 if inode is None else min(bs, inode.size - index * bs)

    adopted = layers.cache.recover_dirty(live)
    if adopted:
        log.info("found %d blocks written before an unclean stop; storing them now", adopted)
    freed = layers.fs.purge_orphans()
    if freed:
        log.info("freed %d files that were deleted while open before an unclean stop", freed)


async def open_stack(fs_dir: Path, opts: StackOptions, secret: bytes) -> Layers:
    """Open the filesystem in `fs_dir`, `build_stack`, then `prepare`; closes what was
    opened if any step fails."""
    opened = await open_fs(fs_dir, secret)
    try:
        layers = build_stack(opened, opts)
    except BaseException:
        await opened.close()
        raise
    try:
        await prepare(layers, opts)
    except BaseException:
        layers.meta.close()
        await layers.poolset.close()
        raise
    return layers
