"""A minimal pyfuse3 passthrough filesystem: the ceiling of a Python FUSE filesystem.

    python bench/passthrough.py SOURCE MOUNTPOINT      (foreground; fusermount3 -u to stop)

It mirrors SOURCE and does nothing else: no cache of its own, no blocks, no encryption.
What it costs is the price of FUSE plus pyfuse3 plus trio, which repfs pays too; the
benchmark runs it on the same workloads as the other systems. It makes the same choices
as repfs where they change speed: entry and attribute timeouts of 1 s, no writeback
cache, pyfuse3.main(min_tasks=4, max_tasks=64). Calls run on the event loop's thread
(the local disk answers fast), and O_DIRECT never reaches the file underneath.

An inode is the inode number of the file underneath (the root is 1). Each remembers the
directory and name it was last found under, so a renamed directory moves its children.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Coroutine, Sequence
from functools import wraps
from typing import Any, TypeVar

import pyfuse3
import trio

TIMEOUT = 1.0
T = TypeVar("T")


def errno_of(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """Turn OSError into FUSEError: anything else escaping an operation ends pyfuse3's loop."""

    @wraps(fn)
    async def op(*args: Any, **kw: Any) -> T:
        try:
            return await fn(*args, **kw)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

    return op


class Passthrough(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = os.path.realpath(source)
        self.where: dict[int, tuple[int, bytes]] = {}  # inode -> (parent inode, name)
        self.lookups: dict[int, int] = {}
        self.files: dict[int, int] = {}  # fh -> fd (fh is the fd)

    # --- paths and attributes -----------------------------------------------------------
    def path(self, inode: int) -> bytes:
        if inode == pyfuse3.ROOT_INODE:
            return os.fsencode(self.source)
        try:
            parent, name = self.where[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None
        return os.path.join(self.path(parent), name)

    def child(self, parent: int, name: bytes) -> bytes:
        return os.path.join(self.path(parent), name)

    def attrs(self, st: os.stat_result, inode: int | None = None) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = pyfuse3.InodeT(inode if inode is not None else st.st_ino)
        a.generation = 0
        a.entry_timeout = TIMEOUT
        a.attr_timeout = TIMEOUT
        a.st_mode = pyfuse3.ModeT(st.st_mode)
        a.st_nlink = st.st_nlink
        a.st_uid = st.st_uid
        a.st_gid = st.st_gid
        a.st_rdev = st.st_rdev
        a.st_size = st.st_size
        a.st_blksize = st.st_blksize
        a.st_blocks = st.st_blocks
        a.st_atime_ns = st.st_atime_ns
        a.st_mtime_ns = st.st_mtime_ns
        a.st_ctime_ns = st.st_ctime_ns
        return a

    def remember(self, parent: int, name: bytes, st: os.stat_result) -> pyfuse3.EntryAttributes:
        """Record where an entry was found and count the kernel's reference to it."""
        self.where[st.st_ino] = (parent, name)
        self.lookups[st.st_ino] = self.lookups.get(st.st_ino, 0) + 1
        return self.attrs(st)

    # --- names --------------------------------------------------------------------------
    @errno_of
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if name == b".":
            return self.attrs(os.lstat(self.path(parent_inode)), parent_inode)
        if name == b"..":
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        return self.remember(parent_inode, name, os.lstat(self.child(parent_inode, name)))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, n in inode_list:
            left = self.lookups.get(inode, 0) - n
            if left > 0:
                self.lookups[inode] = left
            else:
                self.lookups.pop(inode, None)
                self.where.pop(inode, None)

    @errno_of
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attrs(os.lstat(self.path(inode)), inode)

    @errno_of
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self.path(inode)
        if fields.update_size:
            if fh is not None:
                os.ftruncate(fh, attr.st_size)
            else:
                os.truncate(path, attr.st_size)
        if fields.update_mode:
            os.chmod(path, stat.S_IMODE(attr.st_mode))
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            os.chown(path, uid, gid, follow_symlinks=False)
        if fields.update_atime or fields.update_mtime:
            st = os.lstat(path)
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        return self.attrs(os.lstat(path), inode)

    @errno_of
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.readlink(self.path(inode))

    @errno_of
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        return pyfuse3.FileHandleT(inode)

    @errno_of
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        path = self.path(fh)
        entries = sorted(os.scandir(path), key=lambda e: e.inode())
        for e in entries:
            if e.inode() <= start_id:
                continue
            st = e.stat(follow_symlinks=False)
            name = os.fsencode(e.name)
            if not pyfuse3.readdir_reply(token, name, self.attrs(st), st.st_ino):
                break
            self.where[st.st_ino] = (fh, name)
            self.lookups[st.st_ino] = self.lookups.get(st.st_ino, 0) + 1

    async def releasedir(self, fh: int) -> None:
        pass

    @errno_of
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self.child(parent_inode, name)
        os.mkdir(path, mode & ~ctx.umask)
        os.chown(path, ctx.uid, ctx.gid)
        return self.remember(parent_inode, name, os.lstat(path))

    @errno_of
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        os.rmdir(self.child(parent_inode, name))

    @errno_of
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        os.unlink(self.child(parent_inode, name))

    @errno_of
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self.child(parent_inode, name)
        os.symlink(target, path)
        os.chown(path, ctx.uid, ctx.gid, follow_symlinks=False)
        return self.remember(parent_inode, name, os.lstat(path))

    @errno_of
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self.child(new_parent_inode, new_name)
        os.link(self.path(inode), path, follow_symlinks=False)
        return self.remember(new_parent_inode, new_name, os.lstat(path))

    @errno_of
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old, new = self.child(parent_inode_old, name_old), self.child(parent_inode_new, name_new)
        ino = os.lstat(old).st_ino
        os.rename(old, new)
        if ino in self.where:
            self.where[ino] = (parent_inode_new, name_new)

    # --- files --------------------------------------------------------------------------
    @errno_of
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fd = os.open(self.path(inode), flags & ~(os.O_DIRECT | os.O_CREAT))
        self.files[fd] = fd
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fd))

    @errno_of
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self.child(parent_inode, name)
        fd = os.open(path, (flags | os.O_CREAT) & ~os.O_DIRECT, mode & ~ctx.umask)
        os.fchown(fd, ctx.uid, ctx.gid)
        self.files[fd] = fd
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fd)), self.remember(parent_inode, name, os.fstat(fd))

    @errno_of
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    @errno_of
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    @errno_of
    async def flush(self, fh: int) -> None:
        pass

    @errno_of
    async def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    @errno_of
    async def release(self, fh: int) -> None:
        self.files.pop(fh, None)
        os.close(fh)

    @errno_of
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.source)
        out = pyfuse3.StatvfsData()
        for attr in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(out, attr, getattr(st, attr))
        out.f_namemax = st.f_namemax
        return out


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source, mountpoint = sys.argv[1], sys.argv[2]
    ops = Passthrough(source)
    pyfuse3.init(ops, mountpoint, {"fsname=passthrough", "subtype=passthrough"})
    try:
        trio.run(pyfuse3.main, 4, 64)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
