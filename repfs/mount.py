"""Mount, serve, flush and unmount: the FUSE session around the stack `repfs.stack` builds."""

from __future__ import annotations

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
from repfs.admin.service import AdminOptions, Daemon
from repfs.admin.systemd import notify
from repfs.errors import SetupError, UnmountIncomplete
from repfs.fslock import lock_fs_dir, report
from repfs.fuse.kernelcache import Forwarder
from repfs.fuse.ops import RepfsOperations
from repfs.fuse.readahead import DEFAULT_READ_AHEAD, set_when_serving
from repfs.heap import tame_allocator, tame_collector
from repfs.stack import Layers, StackOptions, open_stack
from repfs.volume import FsPaths

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class MountOptions:
    fs_dir: Path
    mountpoint: Path
    stack: StackOptions = field(default_factory=StackOptions)  # the layers below FUSE
    fuse_options: frozenset[str] = field(default_factory=frozenset)  # checked by repfs.mountopts
    allow_non_empty: bool = False  # mount over a directory that holds files
    read_ahead: int = DEFAULT_READ_AHEAD  # the kernel's read-ahead in bytes (repfs.fuse.readahead); 0: its default
    admin: AdminOptions = field(default_factory=AdminOptions)  # the admin socket and metrics


async def serve(opts: MountOptions, secret: bytes, ready: Callable[[list[str]], None] | None = None) -> None:
    """Mount and serve until unmounted or signalled; flushes everything before returning.
    `ready` is called once mounted, with what the person who mounted should know (a pool
    that starts out down)."""
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
        layers = await open_stack(opts.fs_dir, opts.stack, secret)
        metrics = Metrics()
        layers.poolset.observer = metrics.observe_pool
        ops = RepfsOperations(layers.fs, observe=metrics.observe_fuse, audit=layers.audit)
        # The kernel checks permissions (and, with enable_acl, POSIX ACLs): no cached name
        # or kernel-handled open (a FIFO) can get past them. See repfs/fs/access.py.
        fuse_opts = set(opts.fuse_options) | {f"fsname=repfs:{paths.root}", "subtype=repfs", "default_permissions"}
        try:
            pyfuse3.init(ops, str(opts.mountpoint), fuse_opts)
        except RuntimeError as exc:
            await layers.shutdown()
            raise SetupError(f"cannot mount on {opts.mountpoint}: {exc}") from None
        closed = False
        invalidations = Forwarder(layers.kernel_cache)
        unstored = 0
        short = ""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(layers.poolset.stalls.run)
                await nursery.start(layers.journal.run)
                async with trio.open_nursery() as writeback:
                    await writeback.start(layers.cache.run)
                    async with trio.open_nursery() as upkeep:
                        await layers.run_upkeep(upkeep)
                        await upkeep.start(Daemon(layers, opts.mountpoint, opts.admin, metrics).run)
                        upkeep.start_soon(_terminate_on_signal)
                        upkeep.start_soon(invalidations.run)
                        if opts.read_ahead:
                            upkeep.start_soon(set_when_serving, opts.mountpoint, opts.read_ahead)
                        log.info("mounted %s on %s", paths.root, opts.mountpoint)
                        if ready is not None:
                            ready(mount_notes(layers))
                        notify(f"READY=1\nSTATUS=mounted {paths.root} on {opts.mountpoint}")
                        tame_collector()
                        await pyfuse3.main(min_tasks=4, max_tasks=64)
                        invalidations.close()
                        pyfuse3.close(unmount=True)
                        closed = True
                        notify("STOPPING=1\nSTATUS=unmounting: storing dirty blocks")
                        log.info("unmounting: storing dirty blocks")
                        unstored = await layers.store_dirty()
                        short = unmount_note(layers)
                        upkeep.cancel_scope.cancel()
                    writeback.cancel_scope.cancel()  # no upload may touch the metadata once it is closed
                await layers.close()
                nursery.cancel_scope.cancel()
        finally:
            if not closed:
                invalidations.close()
                pyfuse3.close(unmount=True)
        if short:
            log.warning("%s", short)
        if unstored:
            status = f"could not store {unstored} blocks (kept in {layers.cache.root})"
            report(lock_fd, status, short)
            raise UnmountIncomplete(f"unmounted, but {status}; the next mount stores them")
        report(lock_fd, "clean", short)
        log.info("unmounted cleanly")
    finally:
        os.close(lock_fd)


def mount_notes(layers: Layers) -> list[str]:
    """What the terminal that mounted should be told besides "mounted"."""
    unreachable = layers.opened.unreachable.items()
    notes = [f"pool {name} is unreachable and starts out down: {why}" for name, why in unreachable]
    notes += [f"pool {p.name} is offline; put it back with repfs-admin pools online {p.name}"
              for p in layers.opened.config.pools if p.offline]  # fmt: skip
    return notes


def unmount_note(layers: Layers) -> str:
    """Blocks stored short of their copies (on the repair list), and the pools they wait for."""
    short = layers.repairer.deficit()
    if not short:
        return ""
    away = [n for n in layers.poolset.pool_names if not layers.poolset.state(n).serves]
    waiting = f" (pools not in service: {', '.join(away)})" if away else ""
    return f"{short} blocks are stored with fewer copies than wanted{waiting}; the next mount copies them"


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
        layers = await open_stack(opts.fs_dir, opts.stack, secret)
        async with trio.open_nursery() as nursery:
            await nursery.start(layers.journal.run)
            async with trio.open_nursery() as writeback:
                await writeback.start(layers.cache.run)
                async with trio.open_nursery() as services:
                    if upkeep:
                        await layers.run_upkeep(services)
                    result = await work(layers)
                    await layers.store_dirty()
                    services.cancel_scope.cancel()
                writeback.cancel_scope.cancel()  # no upload may touch the metadata once it is closed
            await layers.close()
            nursery.cancel_scope.cancel()
        report(lock_fd, "clean")
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
