"""The filesystem core: POSIX operations over metadata, the block cache and the pools.

Called by the thin FUSE layer (repfs/fuse/ops.py) and directly by tests. Every method
takes plain values (inode numbers, names as bytes, the `Caller`) and returns `Inode`
records or bytes; errors are `repfs.errors.FsError` subclasses carrying their errno.

Inode lifetime: an inode whose last name is removed stays (in the `orphans` table)
while the kernel still knows it (lookup count > 0, e.g. an open file), and is freed at
the last `forget`, at unmount, or at the next mount after a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from repfs.backend.base import PoolUsage
from repfs.blocks.manager import BlockManager
from repfs.cache.blockcache import BlockCache
from repfs.errors import (
    AccessDenied,
    BadFileHandle,
    FileTooLarge,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    NotADirectory,
    NotFound,
)
from repfs.fs import access, acl, holds, ingest, quota, shares, zones
from repfs.fs import namespace as ns
from repfs.fs.access import Caller
from repfs.fs.accounts import AccountBook
from repfs.fs.audit import Audit
from repfs.fs.contenthash import ContentHashes
from repfs.fs.kernelcache import KernelCacheQueue
from repfs.fs.locks import LockTable
from repfs.fs.paths import path_of
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 1 << 50  # 1 PiB


@dataclass
class Handle:
    ino: int
    flags: int
    caller: Caller  # who opened it: a write through it clears setuid/setgid by their rights
    written: bool = False
    read_end: int = 0  # where the last read ended: the next one starting there is sequential (a first at 0 too)
    ahead: int = 1  # blocks fetched ahead of this handle's sequential reader (see Filesystem.read)
    write_end: int = 0  # where the last write ended: the next one starting there is in order (a first at 0 too)

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)

    @property
    def readable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)


# Block map entries `allocated` reads for one stat (see there).
ALLOCATED_SCAN = 1024

NAMESPACE_CACHE = 100_000  # inodes whose namespace is kept in memory

# Blocks fetched ahead of a sequential reader at most (fewer if they would not fit in half
# the cache's memory for streamed blocks): enough to keep several pools streaming.
READ_AHEAD_BLOCKS = 16


@dataclass(frozen=True)
class FsStats:
    block_size: int
    total: int
    free: int
    files: int


@dataclass
class AttrChange:
    """What setattr should change; None means leave alone."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    times_now: bool = False  # both times are "now" (UTIME_NOW), not explicit values


def _orphan_namespace(t: Txn, ino: int) -> int | None:
    """The namespace an unlinked, still open inode was in (kept in its `orphans` row)."""
    raw = t.get("orphans", s.inode_key(ino))
    return s.from_u64(raw) or None if raw is not None and len(raw) == 8 else None


class PoolSpace(Protocol):
    """What the core asks of the pools' space: statfs figures, and whether a write
    would find no pool to take it (ENOSPC at write(), not at write-back)."""

    async def usage(self) -> dict[str, PoolUsage]: ...

    def no_space(self) -> bool: ...


class Filesystem:
    def __init__(
        self,
        meta: MetaStore,
        blocks: BlockManager,
        cache: BlockCache,
        *,
        block_size: int,
        space: PoolSpace,
        replicas: int,
        accounts: AccountBook | None = None,
        audit: Audit | None = None,
        locks: LockTable | None = None,
        kernel: KernelCacheQueue | None = None,
        hashes: ContentHashes | None = None,
    ) -> None:
        self.meta = meta
        self.blocks = blocks
        self.cache = cache
        self.bs = block_size
        self.read_ahead_limit = max(1, min(READ_AHEAD_BLOCKS, cache.max_memory // (2 * block_size)))
        self.space = space
        self.replicas = replicas
        self.accounts = accounts if accounts is not None else AccountBook()
        self.audit = audit
        self.locks = locks if locks is not None else LockTable()
        self.kernel = kernel if kernel is not None else KernelCacheQueue()
        self.hashes = hashes if hashes is not None else ContentHashes(os.urandom(32))  # a stack passes the real key
        self._namespaces: dict[int, int | None] = {}  # ino → its namespace (fixed for its life)
        self.on_over_size: Callable[[int], None] | None = None  # a namespace past its eviction size
        self.lookups: dict[int, int] = {}
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1

    def _admit(self, caller: Caller) -> None:
        """Refuse a caller whose account is disabled or expired (EACCES), on the record."""
        why = self.accounts.refused(caller.uid)
        if why is not None:
            if self.audit is not None:
                self.audit.write(caller.uid, "refused", None, "EACCES", why=why)
            raise AccessDenied(why)

    # --- lifetime ---------------------------------------------------------------------
    def _count(self, ino: int, n: int = 1) -> None:
        self.lookups[ino] = self.lookups.get(ino, 0) + n

    def count_lookup(self, ino: int) -> None:
        """The kernel learned of `ino` through a readdir entry."""
        self._count(ino)

    def forget(self, items: list[tuple[int, int]]) -> None:
        gone = []
        for ino, n in items:
            left = self.lookups.get(ino, 0) - n
            if left > 0:
                self.lookups[ino] = left
            else:
                self.lookups.pop(ino, None)
                gone.append(ino)
        with self.meta.read() as t:  # most forgotten inodes still have names: no write
            orphans = [ino for ino in gone if t.get("orphans", s.inode_key(ino)) is not None]
        if not orphans:
            return
        with self.meta.write() as t:
            for ino in orphans:
                inode = t.inode_or_none(ino)
                if inode is not None and inode.nlink == 0 and ino != s.ROOT_INO:
                    self._purge(t, ino, _orphan_namespace(t, ino))

    def _purge(self, t: Txn, ino: int, namespace: int | None) -> None:
        """Free an inode nobody can reach: its data, its count in its namespace's usage,
        then its metadata."""
        inode = t.inode_or_none(ino)
        if inode is not None:
            quota.charge(t, namespace, nbytes=-quota.counted_bytes(inode), files=-1)
        ingest.forget(t, ino)
        self.hashes.purged(t, ino)
        self._namespaces.pop(ino, None)
        self.cache.drop(ino)
        self.blocks.drop(t, ino, 0)
        shares.forget_item(t, ino)
        ns.forget_inode_metadata(t, ino)

    def _unlinked(self, t: Txn, inode: Inode, namespace: int | None) -> None:
        if inode.nlink > 0:
            return
        # The kernel may still use an inode it knows without its name: a process that
        # resolved the path just before (an open racing a rename over the file), an open
        # FIFO (opened without asking us), a working directory. It is freed at `forget`,
        # and counts to its namespace until then (kept with it: it has no name to find it by).
        if self.lookups.get(inode.ino, 0) > 0:
            t.put("orphans", s.inode_key(inode.ino), s.u64(namespace or 0))
        else:
            self._purge(t, inode.ino, namespace)

    def purge_orphans(self) -> int:
        """Free every unlinked inode the kernel no longer knows (unmount, start-up)."""
        with self.meta.write() as t:
            orphans = [s.from_u64(k) for k, _ in t.scan("orphans", b"")]
            freed = 0
            for ino in orphans:
                if self.lookups.get(ino, 0) == 0:
                    self._purge(t, ino, _orphan_namespace(t, ino))
                    freed += 1
        return freed

    def _namespace(self, t: Txn, ino: int) -> int | None:
        """The namespace `ino` lives in (None: outside all). An inode never changes
        namespace (moves between them are EXDEV), so the answer is kept for its life."""
        if ino in self._namespaces:
            return self._namespaces[ino]
        inode = t.inode(ino)
        if inode.is_dir:
            found = zones.namespace_of(t, ino)
        else:
            link = next(t.links_of(ino), None)
            found = zones.namespace_of(t, link[0]) if link is not None else _orphan_namespace(t, ino)
        if len(self._namespaces) >= NAMESPACE_CACHE:
            self._namespaces.clear()
        self._namespaces[ino] = found
        return found

    def _charge(self, t: Txn, ino: int, *, nbytes: int = 0, files: int = 0) -> None:
        """Count a change in the namespace of `ino` (EDQUOT past a hard limit)."""
        namespace = self._namespace(t, ino)
        charged = quota.charge(t, namespace, nbytes=nbytes, files=files)
        if charged.soft:
            with contextlib.suppress(Exception):
                log.warning("the namespace %s is past its soft limit: %s", path_of(t, namespace or 0),
                            quota.usage(t, namespace or 0))  # fmt: skip
        if charged.evict and namespace is not None and self.on_over_size is not None:
            self.on_over_size(namespace)

    # --- attributes -------------------------------------------------------------------
    def getattr(self, ino: int) -> Inode:
        with self.meta.read() as t:
            return t.inode(ino)

    def presented(self, inode: Inode) -> Inode:
        """`inode` as the kernel is to see it: shares widen the mode's group bits (they
        are the mask of the ACL the kernel reads with getxattr)."""
        with self.meta.read() as t:
            mode = acl.shown_mode(t, inode)
        return inode if mode == inode.mode else dataclasses.replace(inode, mode=mode)

    def allocated(self, inode: Inode) -> int:
        """Bytes of the file's blocks that are not holes (what st_blocks counts): logical
        bytes, before compression, counted once whatever the number of replicas.

        Every stat asks, so the block map is read for at most `ALLOCATED_SCAN` blocks
        (about a millisecond); past them a file is taken to be dense (a sparse tail of a
        file that large counts as data)."""
        if not inode.is_reg or inode.size == 0:
            return 0
        indexes = set(self.cache.dirty_indexes(inode.ino))
        last = (inode.size - 1) // self.bs
        with self.meta.read() as t:
            scanned = list(itertools.islice(t.mapped_indexes(inode.ino), ALLOCATED_SCAN))
        indexes.update(scanned)
        tail_from = scanned[-1] + 1 if len(scanned) == ALLOCATED_SCAN else last + 1  # counted as dense
        tail = max(0, inode.size - tail_from * self.bs)
        return tail + sum(max(0, min(self.bs, inode.size - i * self.bs)) for i in indexes if i < tail_from)

    def lookup(self, caller: Caller, parent: int, name: bytes) -> Inode:
        self._admit(caller)
        with self.meta.read() as t:
            inode = ns.lookup(t, caller, parent, name)
        self._count(inode.ino)
        return inode

    async def setattr(self, caller: Caller, ino: int, ch: AttrChange, fh: int | None = None) -> Inode:
        self._admit(caller)
        with self.meta.write() as t:
            inode = t.inode(ino)
            if ch.mode is not None:
                acl.chmod_keeping_grants(t, inode, stat.S_IFMT(inode.mode) | access.chmod_mode(caller, inode, ch.mode))
            if ch.uid is not None or ch.gid is not None:
                access.check_chown(caller, inode, ch.uid, ch.gid)
                inode.mode = access.mode_after_chown(caller, inode)
                inode.uid = inode.uid if ch.uid is None else ch.uid
                inode.gid = inode.gid if ch.gid is None else ch.gid
            if ch.atime_ns is not None or ch.mtime_ns is not None:
                access.check_times(t, caller, inode, explicit=not ch.times_now)
                inode.atime_ns = inode.atime_ns if ch.atime_ns is None else ch.atime_ns
                inode.mtime_ns = inode.mtime_ns if ch.mtime_ns is None else ch.mtime_ns
            if ch.size is not None:
                if inode.is_dir:
                    raise IsADirectory()
                if not inode.is_reg:
                    raise InvalidArgument("only regular files have a size to change")
                handle = self.handles.get(fh) if fh is not None else None
                if handle is None or not handle.writable:
                    access.check(t, caller, inode, access.W_OK)
                    self.locks.check_free(ino, caller.uid)
                elif fh is not None:
                    self.locks.check_write(fh)
                if ch.size > MAX_FILE_SIZE:
                    raise FileTooLarge()
                holds.check_not_held(t, inode, "truncated")
                inode.mode = access.killed_privileges(caller, inode)
            inode.ctime_ns = ns.now_ns()
            t.put_inode(inode)
        if ch.size is not None:
            await self._set_size(ino, ch.size)
            self._writers_done(ino)
            inode = self.getattr(ino)
        return inode

    def _set_mode(self, ino: int, mode: int) -> None:
        with self.meta.write() as t:
            inode = t.inode(ino)
            inode.mode = mode
            inode.ctime_ns = ns.now_ns()
            t.put_inode(inode)

    async def _set_size(self, ino: int, new: int) -> None:
        with self.meta.write() as t:
            inode = t.inode(ino)
            old = inode.size
            if new == old:
                return
            self._charge(t, ino, nbytes=new - old)
            self.hashes.changing(t, ino)
            inode.size = new
            inode.mtime_ns = inode.ctime_ns = ns.now_ns()
            t.put_inode(inode)
            if new < old:
                first_gone = -(-new // self.bs)
                self.cache.drop(ino, first_gone)
                self.blocks.drop(t, ino, first_gone)
        self.hashes.resized(ino, new)
        if new < old and new % self.bs:
            await self._cut_block(ino, new)
        elif new > old and old % self.bs:
            await self._cut_block(ino, old)

    async def _cut_block(self, ino: int, size: int) -> None:
        """Make the bytes after `size` in its block zero (truncate, or extend past stale data)."""
        index, keep = divmod(size, self.bs)
        await self.cache.truncate(ino, index, keep, stored=self.blocks.mapped_size(ino, index))

    # --- names ------------------------------------------------------------------------
    def mknod(self, caller: Caller, parent: int, name: bytes, mode: int, rdev: int = 0) -> Inode:
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind == stat.S_IFDIR or kind == stat.S_IFLNK:
            raise InvalidArgument("use mkdir or symlink")
        inode = self._create(caller, parent, name, kind | stat.S_IMODE(mode), rdev)
        self._writers_done(inode.ino)  # an empty file nobody writes: its hash is known
        return inode

    def mkdir(self, caller: Caller, parent: int, name: bytes, mode: int) -> Inode:
        return self._create(caller, parent, name, stat.S_IFDIR | stat.S_IMODE(mode))

    def symlink(self, caller: Caller, parent: int, name: bytes, target: bytes) -> Inode:
        return self._create(caller, parent, name, stat.S_IFLNK | 0o777, target=target)

    def _create(self, caller: Caller, parent: int, name: bytes, mode: int, rdev: int = 0, target: bytes = b"") -> Inode:
        self._admit(caller)
        with self.meta.write() as t:
            holds.check_not_held(t, t.inode(parent), "written (no new names)")
            self._charge(t, parent, nbytes=len(target) if stat.S_ISLNK(mode) else 0, files=1)
            inode = ns.create_node(t, caller, parent, name, mode, rdev, target)
            ingest.record(t, inode, self._namespace(t, parent), inode.ctime_ns)
            if inode.is_reg:
                self.hashes.changing(t, inode.ino)
        if inode.is_reg:
            self.hashes.begin(inode.ino)
        self._count(inode.ino)
        return inode

    def readlink(self, caller: Caller, ino: int) -> bytes:
        self._admit(caller)
        with self.meta.read() as t:
            return ns.readlink(t, ino)

    def link(self, caller: Caller, ino: int, parent: int, name: bytes) -> Inode:
        self._admit(caller)
        with self.meta.write() as t:
            holds.check_not_held(t, t.inode(parent), "written (no new names)")
            inode = ns.link(t, caller, ino, parent, name)
            sharing = shares.in_use(t)
        if sharing:  # a name in another folder: it may be shared there
            self.kernel.forget_inode(ino)
        self._count(ino)
        return inode

    def unlink(self, caller: Caller, parent: int, name: bytes, *, expect: int | None = None) -> None:
        """Remove a name (only if it still names inode `expect`, when given: ENOENT if not)."""
        self._admit(caller)
        with self.meta.write() as t:
            if expect is not None and t.lookup(parent, name) != expect:
                raise NotFound("the name no longer names that file")
            self._check_removable(t, caller, parent, name)
            self._unlinked(t, ns.unlink(t, caller, parent, name, rmdir=False), self._namespace(t, parent))

    def _check_removable(self, t: Txn, caller: Caller, parent: int, name: bytes) -> None:
        """A name about to be removed, moved or replaced: refused while another account
        holds its file (EBUSY), or to a grantee that did not make it (EPERM)."""
        child = t.lookup(parent, name)
        if child is not None:
            victim = t.inode(child)
            holds.check_not_held(t, victim, "deleted, renamed or replaced")
            self.locks.check_free(child, caller.uid)
            shares.check_change(t, caller.uid, victim, parent)

    def rmdir(self, caller: Caller, parent: int, name: bytes) -> None:
        self._admit(caller)
        with self.meta.write() as t:
            self._check_removable(t, caller, parent, name)
            self._unlinked(t, ns.unlink(t, caller, parent, name, rmdir=True), self._namespace(t, parent))

    def rename(self, caller: Caller, old_parent: int, old: bytes, new_parent: int, new: bytes, flags: int) -> None:
        self._admit(caller)
        with self.meta.write() as t:
            self._check_removable(t, caller, old_parent, old)
            self._check_removable(t, caller, new_parent, new)
            if new_parent != old_parent:
                holds.check_not_held(t, t.inode(new_parent), "written (no new names)")
            moved = t.lookup(old_parent, old)
            replaced = ns.rename(t, caller, old_parent, old, new_parent, new, flags)
            if replaced is not None:
                self._unlinked(t, replaced, self._namespace(t, new_parent))
            sharing = old_parent != new_parent and shares.in_use(t)
        if sharing and moved is not None:
            self._forget_moved(moved)

    def _forget_moved(self, ino: int) -> None:
        """What moved to another folder may be shared differently there: the kernel
        forgets the ACLs it cached of it and, for a folder, of what it knows below it."""
        self.kernel.forget_inode(ino)
        with self.meta.read() as t:
            if not t.inode(ino).is_dir:
                return
            for other in list(self.lookups):
                o = t.inode_or_none(other)
                if o is not None and other != ino and ino in shares.above(t, o):
                    self.kernel.forget_inode(other)

    # --- directories ------------------------------------------------------------------
    def opendir(self, caller: Caller, ino: int) -> int:
        self._admit(caller)
        with self.meta.read() as t:
            inode = t.inode(ino)
            if not inode.is_dir:
                raise NotADirectory()
            access.check(t, caller, inode, access.R_OK)
        return ino

    def readdir(self, ino: int, start: int) -> Iterator[tuple[int, bytes, Inode]]:
        """(next position, name, inode) from position `start`; stable while the directory changes."""
        with self.meta.read() as t:
            for cookie, name, child in t.entries_from(ino, start):
                yield cookie + 1, name, t.inode(child)

    # --- files ------------------------------------------------------------------------
    def _new_handle(self, ino: int, flags: int, caller: Caller) -> int:
        """A handle; one that may write takes (or joins) its account's lock on the file."""
        fh = self._next_fh
        self._next_fh += 1
        h = Handle(ino, flags, caller)
        if h.writable:
            holder = self.accounts.name_of(caller.uid) or f"uid {caller.uid}"
            self.locks.take(ino, caller.uid, holder, fh)
        self.handles[fh] = h
        return fh

    def handle(self, fh: int) -> Handle:
        try:
            return self.handles[fh]
        except KeyError:
            raise BadFileHandle() from None

    async def open(self, caller: Caller, ino: int, flags: int) -> int:
        self._admit(caller)
        with self.meta.read() as t:
            inode = t.inode(ino)
            if inode.is_dir and (flags & os.O_ACCMODE) != os.O_RDONLY:
                raise IsADirectory()
            access.check(t, caller, inode, access.open_access(flags))
            if (flags & os.O_ACCMODE) != os.O_RDONLY:
                holds.check_not_held(t, inode, "written")
        fh = self._new_handle(ino, flags, caller)  # the lock before anything changes
        try:
            # The kernel hands O_TRUNC to open (atomic_o_trunc) instead of a separate setattr.
            if flags & os.O_TRUNC and inode.is_reg and (flags & os.O_ACCMODE) != os.O_RDONLY:
                if access.killed_privileges(caller, inode) != inode.mode:
                    self._set_mode(ino, access.killed_privileges(caller, inode))
                if inode.size:
                    await self._set_size(ino, 0)
        except BaseException:
            self.release(fh)  # the kernel never learns of this handle: its lock goes now
            raise
        return fh

    def create(self, caller: Caller, parent: int, name: bytes, mode: int, flags: int) -> tuple[int, Inode]:
        inode = self._create(caller, parent, name, stat.S_IFREG | stat.S_IMODE(mode))
        return self._new_handle(inode.ino, flags, caller), inode

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        h = self.handle(fh)
        self._admit(h.caller)  # a file opened before the account was disabled is refused too
        if not h.readable:
            raise BadFileHandle()
        inode = self.getattr(h.ino)
        if inode.is_dir:
            raise IsADirectory()
        end = min(offset + size, inode.size)
        if offset < 0:
            raise InvalidArgument()
        sequential = offset == h.read_end
        h.read_end = end
        # A sequential reader of a file too big to keep (over a quarter of the cache, which
        # it would flush) is streamed: its blocks are held in memory, not in cache files.
        streaming = sequential and inode.size > self.cache.max_bytes // 4
        parts = []
        pos = offset
        while pos < end:
            index, boff = divmod(pos, self.bs)
            n = min(self.bs - boff, end - pos)
            # Read-ahead, sized by how fast the reader takes its blocks: a sequential reader
            # gets the next `h.ahead` blocks on their way, and twice as many each time it
            # catches up with them (its block is not in yet), up to the limit; any other
            # reader gets the next block once it is half way through this one.
            if sequential:
                if not self.cache.cached(h.ino, index) and h.ahead < self.read_ahead_limit:
                    h.ahead = min(2 * h.ahead, self.read_ahead_limit)
                ahead = range(index + 1, index + 1 + h.ahead)
            else:
                ahead = range(index + 1, index + 2 if boff + n >= self.bs // 2 else index + 1)
            for i in ahead:
                if i * self.bs >= inode.size:
                    break
                self.cache.prefetch(h.ino, i, streaming=streaming)
            parts.append(await self.cache.read(h.ino, index, boff, n, streaming=streaming))
            pos += n
        return b"".join(parts)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self.handle(fh)
        self._admit(h.caller)
        if not h.writable:
            raise BadFileHandle()
        self.locks.check_write(fh)
        inode = self.getattr(h.ino)
        if h.flags & os.O_APPEND:
            offset = inode.size
        end = offset + len(data)
        if offset < 0:
            raise InvalidArgument()
        if end > MAX_FILE_SIZE:
            raise FileTooLarge()
        if data and self.space.no_space():  # every pool is full: fail now, not at write-back
            raise NoSpace("every pool is full")
        if offset > inode.size and inode.size % self.bs:
            await self._cut_block(h.ino, inode.size)
        # size first: an upload that finishes mid-write must see its block as live
        with self.meta.write() as t:
            inode = t.inode(h.ino)
            holds.check_not_held(t, inode, "written")  # also through a handle opened before the hold
            if end > inode.size:
                self._charge(t, h.ino, nbytes=end - inode.size)
            inode.size = max(inode.size, end)
            inode.mtime_ns = inode.ctime_ns = ns.now_ns()
            inode.mode = access.killed_privileges(h.caller, inode)
            self.hashes.changing(t, h.ino)
            t.put_inode(inode)
        self.hashes.wrote(h.ino, offset, data)  # in the order writes come, before any wait
        in_order = offset == h.write_end  # the blocks it fills are not kept once stored (see the cache)
        h.write_end = end
        view = memoryview(data)  # slices of it go down as they are: no copy of the data
        pos = offset
        try:
            while pos < end:
                index, boff = divmod(pos, self.bs)
                n = min(self.bs - boff, end - pos)
                stored = 0 if self.cache.cached(h.ino, index) else self.blocks.mapped_size(h.ino, index)
                part = view[pos - offset : pos - offset + n]
                await self.cache.write(h.ino, index, boff, part, stored=stored, in_order=in_order)
                pos += n
        except BaseException:
            self.hashes.resized(h.ino, -1)  # what the file holds is not what was hashed
            raise
        h.written = True
        return len(data)

    async def fsync(self, fh: int) -> None:
        """Return when the file's data and the metadata reaching it are durable.

        That is every change set committed before the fsync began (the file's name and
        size among them) and the ones that mapped its blocks; not the later bookkeeping of
        which pools took them, which recovery can find out again."""
        ino = self.handle(fh).ino
        start = self.meta.seq
        with self.blocks.awaited(ino):
            await self.cache.flush(ino)
        await self.blocks.durable(ino, start)

    def flush(self, fh: int) -> None:
        if self.handle(fh).written:
            self.cache.kick()

    def release(self, fh: int) -> None:
        h = self.handles.pop(fh, None)
        if h is None:
            return
        if h.writable:
            self.locks.release(h.ino, fh)
            self._writers_done(h.ino)
        if h.written:
            self.cache.kick()

    def _writers_done(self, ino: int) -> None:
        """No handle writes `ino` any more: its content hash is recorded, or left to the hasher."""
        if self.hashes.busy(ino) and self.locks.holder(ino) is None:  # every writable handle holds the lock
            with self.meta.write() as t:
                inode = t.inode_or_none(ino)
                if inode is not None:
                    self.hashes.closed(t, inode)

    async def fsyncdir(self) -> None:
        await self.blocks.durable()

    async def sync_all(self) -> None:
        await self.cache.flush_all()
        await self.blocks.durable()

    # --- extended attributes ----------------------------------------------------------
    def getxattr(self, caller: Caller, ino: int, name: bytes) -> bytes:
        self._admit(caller)
        with self.meta.read() as t:
            return ns.getxattr(t, caller, ino, name)

    def setxattr(self, caller: Caller, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self._admit(caller)
        with self.meta.write() as t:
            ns.setxattr(t, caller, ino, name, value, flags)

    def listxattr(self, caller: Caller, ino: int) -> list[bytes]:
        self._admit(caller)
        with self.meta.read() as t:
            return ns.listxattr(t, caller, ino)

    def removexattr(self, caller: Caller, ino: int, name: bytes) -> None:
        self._admit(caller)
        with self.meta.write() as t:
            ns.removexattr(t, caller, ino, name)

    # --- misc -------------------------------------------------------------------------
    def access(self, caller: Caller, ino: int, mode: int) -> None:
        self._admit(caller)
        with self.meta.read() as t:
            if mode and not access.permitted(t, caller, t.inode(ino), mode):
                raise AccessDenied()

    async def statfs(self) -> FsStats:
        # Pools on one disk share its space: each disk is counted once.
        shared: dict[str, PoolUsage] = {}
        own: list[PoolUsage] = []
        for u in (await self.space.usage()).values():
            if u.device:
                shared[u.device] = u
            else:
                own.append(u)
        spaces = [*shared.values(), *own]
        total = sum(u.total for u in spaces) // self.replicas
        free = sum(u.free for u in spaces) // self.replicas
        with self.meta.read() as t:
            files = t.txn.stat(t.db["inodes"])["entries"]
        return FsStats(block_size=self.bs, total=total, free=free, files=int(files))

    def stats(self) -> dict[str, Any]:
        return {
            "dirty_bytes": self.cache.dirty_bytes,
            "clean_bytes": self.cache.clean_bytes,
            "memory_bytes": self.cache.memory_bytes,
            "open_handles": len(self.handles),
            **self.blocks.stats,
        }
