"""pyfuse3 Operations: translate kernel requests to `Filesystem` calls and back.

Nothing but translation lives here: the caller's uid/gid become a `Caller`, `Inode`
records become `EntryAttributes`, errors become errnos (see boundary.py). Each file
access is handed to the audit log (repfs/fs/audit.py), which writes one record when
auditing is on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence

import pyfuse3

from repfs.errors import InvalidArgument, NotFound
from repfs.fs.access import Caller
from repfs.fs.audit import Audit
from repfs.fs.core import AttrChange, Filesystem
from repfs.fuse.boundary import fuse_op
from repfs.meta.records import Inode

ATTR_TIMEOUT = 1.0
ENTRY_TIMEOUT = 1.0


def caller_of(ctx: pyfuse3.RequestContext) -> Caller:
    groups: frozenset[int] = frozenset()
    if ctx.uid != 0:
        try:
            groups = frozenset(pyfuse3.get_sup_groups(ctx.pid))
        except (OSError, ValueError):  # the process is gone: primary group only
            groups = frozenset()
    # The kernel has checked POSIX permissions and ACLs (default_permissions, enable_acl).
    return Caller(ctx.uid, ctx.gid, groups, ctx.umask, kernel_checked=True)


def _name(name: bytes) -> str:
    """An attribute name for an audit record (undecodable bytes escaped)."""
    return os.fsdecode(name)


def _access_mode(flags: int) -> str:
    return {os.O_RDONLY: "r", os.O_WRONLY: "w"}.get(flags & os.O_ACCMODE, "rw")


def _xattr_op(name: bytes, verb: str) -> str:
    """`setfacl`/`removefacl` for POSIX ACLs, else `setxattr`/`removexattr`."""
    return f"{verb}facl" if name.startswith(b"system.posix_acl_") else f"{verb}xattr"


def entry(inode: Inode, block_size: int, allocated: int) -> pyfuse3.EntryAttributes:
    """Attributes for the kernel, which may cache them and the name that led here: it
    checks permissions itself, also on cached names. `allocated`: bytes not in holes."""
    a = pyfuse3.EntryAttributes()
    a.st_ino = pyfuse3.InodeT(inode.ino)
    a.generation = 0
    a.entry_timeout = ENTRY_TIMEOUT
    a.attr_timeout = ATTR_TIMEOUT
    a.st_mode = pyfuse3.ModeT(inode.mode)
    a.st_nlink = inode.nlink
    a.st_uid = inode.uid
    a.st_gid = inode.gid
    a.st_rdev = inode.rdev
    a.st_size = inode.size
    a.st_blksize = min(block_size, 1 << 20)
    a.st_blocks = (allocated + 511) // 512
    a.st_atime_ns = inode.atime_ns
    a.st_mtime_ns = inode.mtime_ns
    a.st_ctime_ns = inode.ctime_ns
    return a


class RepfsOperations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = True  # the kernel caches and enforces POSIX ACLs (and default_permissions)

    def __init__(
        self,
        fs: Filesystem,
        *,
        observe: Callable[[str, float, int | None, int], None] | None = None,
        audit: Audit | None = None,
    ) -> None:
        super().__init__()
        self.fs = fs
        self.bs = fs.bs
        self.observe = observe  # read by boundary.fuse_op
        self.audit = audit if audit is not None else Audit(fs.meta, fs.accounts)

    def _entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        return entry(self.fs.presented(inode), self.bs, self.fs.allocated(inode))

    @fuse_op
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        try:
            inode = self.fs.lookup(caller_of(ctx), parent_inode, name)
        except NotFound:
            # A negative entry: the kernel remembers that the name is not there (rsync,
            # compilers and shells look for many missing names, often the same ones).
            # Only this mount changes the tree, and the kernel forgets it when it makes the name.
            missing = pyfuse3.EntryAttributes()
            missing.st_ino = pyfuse3.InodeT(0)
            missing.entry_timeout = ENTRY_TIMEOUT
            return missing
        return self._entry(inode)

    @fuse_op
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        self.fs.forget(list(inode_list))

    @fuse_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(self.fs.getattr(inode))

    @fuse_op
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        ch = AttrChange(
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        )
        if ch.uid is None and ch.gid is None and ch.mode is None:
            return self._entry(await self.fs.setattr(caller_of(ctx), inode, ch, fh))
        op = "chown" if ch.uid is not None or ch.gid is not None else "chmod"
        mode = f"{ch.mode & 0o7777:o}" if ch.mode is not None else None
        with self.audit.record(ctx.uid, op, ino=inode, mode=mode, owner=ch.uid, group=ch.gid):
            return self._entry(await self.fs.setattr(caller_of(ctx), inode, ch, fh))

    @fuse_op
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self.fs.readlink(caller_of(ctx), inode)

    @fuse_op
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with self.audit.record(ctx.uid, "mknod", parent=parent_inode, name=name):
            return self._entry(self.fs.mknod(caller_of(ctx), parent_inode, name, mode, rdev))

    @fuse_op
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with self.audit.record(ctx.uid, "mkdir", parent=parent_inode, name=name):
            return self._entry(self.fs.mkdir(caller_of(ctx), parent_inode, name, mode))

    @fuse_op
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with self.audit.record(ctx.uid, "unlink", parent=parent_inode, name=name):
            self.fs.unlink(caller_of(ctx), parent_inode, name)

    @fuse_op
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with self.audit.record(ctx.uid, "rmdir", parent=parent_inode, name=name):
            self.fs.rmdir(caller_of(ctx), parent_inode, name)

    @fuse_op
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with self.audit.record(ctx.uid, "symlink", parent=parent_inode, name=name):
            return self._entry(self.fs.symlink(caller_of(ctx), parent_inode, name, target))

    @fuse_op
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        with self.audit.record(
            ctx.uid, "rename", parent=parent_inode_old, name=name_old, new_parent=parent_inode_new, new_name=name_new
        ):
            self.fs.rename(caller_of(ctx), parent_inode_old, name_old, parent_inode_new, name_new, flags)

    @fuse_op
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with self.audit.record(ctx.uid, "link", ino=inode, new_parent=new_parent_inode, new_name=new_name):
            return self._entry(self.fs.link(caller_of(ctx), inode, new_parent_inode, new_name))

    @fuse_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with self.audit.record(ctx.uid, "open", ino=inode, mode=_access_mode(flags)):
            fh = await self.fs.open(caller_of(ctx), inode, flags & ~os.O_DIRECT)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=False)

    @fuse_op
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        with self.audit.record(ctx.uid, "create", parent=parent_inode, name=name, mode=_access_mode(flags)):
            fh, inode = self.fs.create(caller_of(ctx), parent_inode, name, mode, flags & ~os.O_DIRECT)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=False), self._entry(inode)

    @fuse_op
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @fuse_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, buf)

    @fuse_op
    async def flush(self, fh: int) -> None:
        self.fs.flush(fh)

    @fuse_op
    async def release(self, fh: int) -> None:
        self.fs.release(fh)

    @fuse_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh)

    @fuse_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return pyfuse3.FileHandleT(self.fs.opendir(caller_of(ctx), inode))

    @fuse_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for next_id, name, inode in self.fs.readdir(fh, start_id):
            attrs = self._entry(inode)
            if not pyfuse3.readdir_reply(token, name, attrs, next_id):
                break
            self.fs.count_lookup(inode.ino)

    @fuse_op
    async def releasedir(self, fh: int) -> None:
        return None

    @fuse_op
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.fs.fsyncdir()

    @fuse_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = await self.fs.statfs()
        v = pyfuse3.StatvfsData()
        v.f_bsize = 4096
        v.f_frsize = 4096
        v.f_blocks = st.total // v.f_frsize
        v.f_bfree = st.free // v.f_frsize
        v.f_bavail = v.f_bfree
        v.f_files = st.files + 1_000_000_000
        v.f_ffree = 1_000_000_000
        v.f_favail = v.f_ffree
        v.f_namemax = 255
        return v

    @fuse_op
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        with self.audit.record(ctx.uid, _xattr_op(name, "set"), ino=inode, attribute=_name(name)):
            self.fs.setxattr(caller_of(ctx), inode, name, value)

    @fuse_op
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return self.fs.getxattr(caller_of(ctx), inode, name)

    @fuse_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        return self.fs.listxattr(caller_of(ctx), inode)

    @fuse_op
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with self.audit.record(ctx.uid, _xattr_op(name, "remove"), ino=inode, attribute=_name(name)):
            self.fs.removexattr(caller_of(ctx), inode, name)

    @fuse_op
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        try:
            self.fs.access(caller_of(ctx), inode, mode)
        except InvalidArgument:
            raise pyfuse3.FUSEError(errno.EINVAL) from None
        return True
