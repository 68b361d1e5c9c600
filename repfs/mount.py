"""The composition root: build the layers, mount, serve, flush and unmount."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pyfuse3
import trio

from repfs import logs, mountinfo
from repfs.admin.auth import resolve_group
from repfs.admin.metrics import Metrics
from repfs.admin.pools import PoolManager
from repfs.admin.service import AdminOptions, Daemon
from repfs.admin.systemd import notify
from repfs.backend.health import HealthMonitor
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.usage import DEFAULT_INTERVAL as USAGE_INTERVAL
from repfs.backend.usage import UsageMonitor
from repfs.cache.blockcache import BlockCache
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.errors import SetupError, StorageError, UnmountIncomplete
from repfs.fs.blocks import BlockManager
from repfs.fs.core import Filesystem
from repfs.fs.ratelimit import RateLimit
from repfs.fs.repair import Repairer
from repfs.fuse.ops import RepfsOperations
from repfs.heap import tame_allocator
from repfs.journal.replay import catch_up
from repfs.journal.writer import JournalWriter
from repfs.lease import MountLease
from repfs.meta import schema as s
from repfs.meta.store import MetaStore
from repfs.volume import FsPaths, OpenedFs, open_fs

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class MountOptions:
    fs_dir: Path
    mountpoint: Path
    cache_dir: Path | None = None
    cache_size: int = 2 << 30
    max_dirty: int = 512 << 20
    fuse_options: frozenset[str] = field(default_factory=frozenset)  # checked by repfs.mountopts
    allow_non_empty: bool = False  # mount over a directory that holds files
    uploads: int = 8
    idle_seconds: float = 1.0
    heartbeat: float = 10.0
    down_after: int = 3  # missed heartbeats in a row
    challenge_size: int | None = 32  # blocks checked when a pool comes back; None: all
    repair_rate: float | None = 64 << 20  # bytes/s the background repair may write
    take_over: bool = False  # take over another host's expired lease
    break_lease: bool = False  # take the lease whatever its state
    usage_interval: float = USAGE_INTERVAL  # seconds between measurements of pool usage
    admin: AdminOptions = field(default_factory=AdminOptions)  # the admin socket and metrics
    audit: bool = False  # log every open, create, delete and rename with the caller's uid


@dataclass
class Layers:
    """Everything a mounted filesystem is made of (also used by tests without a mount)."""

    opened: OpenedFs
    meta: MetaStore
    store: ReplicatedStore
    blocks: BlockManager
    cache: BlockCache
    fs: Filesystem
    health: HealthMonitor
    repairer: Repairer
    journal: JournalWriter
    lease: MountLease
    usage: UsageMonitor
    pools: PoolManager

    async def run_upkeep(self, nursery: trio.Nursery) -> None:
        """Background work that uses the metadata: garbage collection, pool health and
        usage, repair, the lease, and changes of pools (resumed drains and rebalances)."""
        await nursery.start(self.blocks.run_gc)
        await nursery.start(self.health.run)
        await nursery.start(self.repairer.run)
        await nursery.start(self.lease.run)
        await nursery.start(self.usage.run)
        await nursery.start(self.pools.run)

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
        self.fs.purge_orphans()
        try:
            await self.blocks.collect()
        except* StorageError as group:
            log.warning("garbage collection left for the next mount: %s", group.exceptions[0])
        clean = False
        try:
            await self.journal.flush()
            await self.journal.snapshot_now()
            clean = True
        except StorageError as exc:
            log.error("cannot store the metadata journal at unmount; the next mount does: %s", exc)
        with self.meta.write() as t:
            t.put("meta", s.META_CLEAN, s.u64(int(clean)))
        self.meta.close()
        if clean:
            await self.lease.release()
        await self.store.close()

    async def shutdown(self) -> int:
        """`store_dirty` then `close`: for a filesystem without running services."""
        unstored = await self.store_dirty()
        await self.close()
        return unstored


def lock_fs_dir(paths: FsPaths) -> int:
    """Hold the filesystem directory's lock for the daemon's life (one mount at a time)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = paths.lock.read_text().split("\n", 1)[0].strip() or "?"
        where = ", ".join(mountinfo.mountpoints_of(paths.root)) or "no mount point (a scrub or fsck?)"
        raise SetupError(
            f"{paths.root} is already mounted by another repfs process (pid {pid}, on {where}); "
            "unmount it first with: repfs umount MOUNTPOINT"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def build_layers(opts: MountOptions, secret: bytes) -> Layers:
    opened = await open_fs(opts.fs_dir, secret)
    config = opened.config
    codec = BlockCodec(derive_keys(opened.data_key))
    cpu = trio.CapacityLimiter(max(2, os.cpu_count() or 2))
    store = ReplicatedStore(
        opened.pools,
        {p.name: p.weight for p in config.pools},
        replicas=config.replicas,
        write_quorum=config.write_quorum,
        cpu_limiter=cpu,
        capacities={p.name: p.capacity for p in config.pools},
        thresholds={p.name: (p.warn_threshold, p.critical_threshold) for p in config.pools},
        draining=[p.name for p in config.pools if p.draining],
    )
    meta = MetaStore(opened.paths.meta)
    journal = JournalWriter(meta, store, codec, cpu=cpu, copies=config.replicas)
    meta.sink = journal.append
    blocks = BlockManager(meta, codec, store, block_size=config.block_size, cpu=cpu, durable=journal.wait_stored)
    blocks.on_mapped = journal.kick
    blocks.stored_seq = lambda: journal.stored
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
        await opened.close()
        raise
    except OSError as exc:
        meta.close()
        await opened.close()
        raise SetupError(
            f"cache directory {cache_dir} is not writable: {exc.strerror}; choose another with --cache-dir"
        ) from None
    cache = BlockCache(
        cache_dir,
        block_size=config.block_size,
        max_bytes=opts.cache_size,
        max_dirty=opts.max_dirty,
        fetch=blocks.fetch,
        store=blocks.store_block,
        uploads=opts.uploads,
        idle_seconds=opts.idle_seconds,
    )
    fs = Filesystem(
        meta,
        blocks,
        cache,
        block_size=config.block_size,
        usage=store.usage,
        replicas=config.replicas,
        no_space=store.no_space,
        durable=journal.wait_stored,
    )
    repairer = Repairer(meta, store, blocks.locks, rate=RateLimit(opts.repair_rate))
    health = HealthMonitor(
        store,
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
    )
    # abspath is string work on the path (a getcwd at most), no disk I/O: no worker thread needed
    lease = MountLease(store, codec, os.path.abspath(opened.paths.root))  # noqa: ASYNC240
    usage = UsageMonitor(store, interval=opts.usage_interval)
    pools = PoolManager(opened, meta, store, health, repairer, usage)
    pools.journal = journal
    return Layers(opened, meta, store, blocks, cache, fs, health, repairer, journal, lease, usage, pools)


def _catch_up(repairer: Repairer, journal: JournalWriter) -> Callable[[str], None]:
    """What a pool accepted as it is gets: its blocks checked and copied back, and a new
    metadata snapshot in place of the journal objects it may have lost."""

    def accepted(pool: str) -> None:
        repairer.queue_return(pool)
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


async def prepare(layers: Layers, opts: MountOptions) -> None:
    """Before serving: take the lease, agree with the pools' journal, then take over what a
    crash left."""
    await layers.lease.acquire(take_over=opts.take_over, break_lease=opts.break_lease)
    await catch_up(layers.meta, layers.journal, layers.store, layers.journal.codec)
    with layers.meta.write() as t:
        t.put("meta", s.META_CLEAN, s.u64(0))
    adopt_leftovers(layers)


def adopt_leftovers(layers: Layers) -> None:
    """After a crash: upload dirty blocks the last daemon left, free its unlinked inodes."""
    bs = layers.opened.config.block_size

    def keep(ino: int, index: int) -> bool:
        with layers.meta.read() as t:
            inode = t.inode_or_none(ino)
        return inode is not None and index * bs < inode.size

    adopted = layers.cache.recover_dirty(keep)
    if adopted:
        log.info("found %d blocks written before an unclean stop; storing them now", adopted)
    freed = layers.fs.purge_orphans()
    if freed:
        log.info("freed %d files that were deleted while open before an unclean stop", freed)


async def open_layers(opts: MountOptions, secret: bytes) -> Layers:
    """`build_layers` then `prepare`; closes what was opened if preparing fails."""
    layers = await build_layers(opts, secret)
    try:
        await prepare(layers, opts)
    except BaseException:
        layers.meta.close()
        await layers.store.close()
        raise
    return layers


async def serve(opts: MountOptions, secret: bytes, ready: Callable[[], None] | None = None) -> None:
    """Mount and serve until unmounted or signalled; flushes everything before returning."""
    tame_allocator()
    paths = FsPaths(opts.fs_dir)
    # Everything that can be checked is checked before the pools are touched (no lease,
    # no snapshot for a typo): the mount point, the admin group, the metrics address.
    mountinfo.check_mountpoint(opts.mountpoint, allow_non_empty=opts.allow_non_empty)
    if opts.admin.enabled:
        resolve_group(opts.admin.group)
        if opts.admin.metrics is not None:
            check_bindable(*opts.admin.metrics)
        if opts.admin.socket is not None:  # its directory is made if missing: the nearest one there must take it
            where = next(p for p in opts.admin.socket.parents if p.exists())
            if not (where.is_dir() and os.access(where, os.W_OK | os.X_OK)):
                raise SetupError(f"--admin-socket {opts.admin.socket}: cannot make it under {where}")
    lock_fd = lock_fs_dir(paths)
    try:
        layers = await open_layers(opts, secret)
        metrics = Metrics()
        layers.store.observer = metrics.observe_pool
        ops = RepfsOperations(layers.fs, observe=metrics.observe_fuse, audit=opts.audit)
        # The kernel checks permissions (and, with enable_acl, POSIX ACLs): no cached name
        # or kernel-handled open (a FIFO) can get past them. See repfs/fs/access.py.
        fuse_opts = set(opts.fuse_options) | {f"fsname=repfs:{paths.root}", "subtype=repfs", "default_permissions"}
        try:
            pyfuse3.init(ops, str(opts.mountpoint), fuse_opts)
        except RuntimeError as exc:
            await layers.shutdown()
            raise SetupError(f"cannot mount on {opts.mountpoint}: {exc}") from None
        closed = False
        unstored = 0
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(layers.cache.run)
                await nursery.start(layers.journal.run)
                async with trio.open_nursery() as upkeep:
                    await layers.run_upkeep(upkeep)
                    await upkeep.start(Daemon(layers, opts.mountpoint, opts.admin, metrics).run)
                    upkeep.start_soon(_terminate_on_signal)
                    log.info("mounted %s on %s", paths.root, opts.mountpoint)
                    if ready is not None:
                        ready()
                    notify(f"READY=1\nSTATUS=mounted {paths.root} on {opts.mountpoint}")
                    await pyfuse3.main(min_tasks=4, max_tasks=64)
                    pyfuse3.close(unmount=True)
                    closed = True
                    notify("STOPPING=1\nSTATUS=unmounting: storing dirty blocks")
                    log.info("unmounting: storing dirty blocks")
                    unstored = await layers.store_dirty()
                    upkeep.cancel_scope.cancel()
                await layers.close()
                nursery.cancel_scope.cancel()
        finally:
            if not closed:
                pyfuse3.close(unmount=True)
        if unstored:
            status = f"could not store {unstored} blocks (kept in {layers.cache.root})"
            _report(lock_fd, status)
            raise UnmountIncomplete(f"unmounted, but {status}; the next mount stores them")
        _report(lock_fd, "clean")
        log.info("unmounted cleanly")
    finally:
        os.close(lock_fd)


def _report(lock_fd: int, status: str) -> None:
    """Leave the outcome in the lock file, where `repfs umount` reads it once the lock is free."""
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n{status}\n".encode(), 0)


def read_report(paths: FsPaths) -> str | None:
    """The status the last daemon left (`clean` or what went wrong), None when it left none."""
    try:
        lines = paths.lock.read_text().splitlines()
    except OSError:
        return None
    return lines[1] if len(lines) > 1 else None


async def run_unmounted(
    opts: MountOptions, secret: bytes, work: Callable[[Layers], Awaitable[T]], *, upkeep: bool = True
) -> T:
    """Run `work` on the filesystem without mounting it (scrub, fsck): the same layers and
    services as a mount, under the same lock, stored and closed the same way after.
    `upkeep=False` leaves out garbage collection, health checks and repair (fsck wants the
    pools to hold still while it compares them with the metadata)."""
    paths = FsPaths(opts.fs_dir)
    lock_fd = lock_fs_dir(paths)
    try:
        layers = await open_layers(opts, secret)
        async with trio.open_nursery() as nursery:
            await nursery.start(layers.cache.run)
            await nursery.start(layers.journal.run)
            async with trio.open_nursery() as services:
                if upkeep:
                    await layers.run_upkeep(services)
                result = await work(layers)
                await layers.store_dirty()
                services.cancel_scope.cancel()
            await layers.close()
            nursery.cancel_scope.cancel()
        _report(lock_fd, "clean")
        return result
    finally:
        os.close(lock_fd)


def check_bindable(host: str, port: int) -> None:
    """Refuse a metrics address nobody can listen on (in use, not ours) before mounting."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SetupError(f"--metrics {host}:{port}: cannot resolve the address: {exc}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise SetupError(
                f"--metrics {host}:{port}: cannot listen there ({exc.strerror}); choose another port"
            ) from None


async def _terminate_on_signal() -> None:
    """SIGTERM and SIGINT unmount cleanly (everything stored); SIGHUP reopens the log file."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                logs.reopen()
                log.info("signal SIGHUP: log file reopened")
                continue
            log.info("signal %s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
