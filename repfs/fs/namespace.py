"""Namespace operations on metadata: create, link, unlink, rename, attributes, xattrs.

Each function runs inside one write transaction given by the caller (the filesystem
core) and never awaits. Permission checks go through `repfs.fs.access`. Freeing the
data of an inode whose last link went away is the core's job: these functions only
report that nlink reached zero.
"""

from __future__ import annotations

import stat
import time

from repfs.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoAttribute,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
)
from repfs.fs import access, acl, zones
from repfs.fs.access import Caller
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

NAME_MAX = 255
SYMLINK_MAX = 4095
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
LINK_MAX = 65000

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def now_ns() -> int:
    return time.time_ns()


def check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise NameTooLong()
    if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
        raise InvalidArgument(f"invalid file name {name!r}")


def directory(t: Txn, ino: int) -> Inode:
    inode = t.inode(ino)
    if not inode.is_dir:
        raise NotADirectory()
    return inode


def lookup(t: Txn, caller: Caller, parent: int, name: bytes) -> Inode:
    if len(name) > NAME_MAX:
        raise NameTooLong()
    pdir = directory(t, parent)
    access.check_search(t, caller, pdir)
    if name == b".":
        return pdir
    if name == b"..":
        up = t.get("parents", s.inode_key(parent))
        return t.inode(s.from_u64(up) if up else s.ROOT_INO)
    child = t.lookup(parent, name)
    if child is None:
        raise NotFound()
    return t.inode(child)


ROOT_MODE = 0o1775  # the administrators' group manages the top level; sticky: nobody renames another's


def make_root(t: Txn, uid: int, gid: int) -> None:
    """The root: `uid`:`gid` (root and the admin group at mkfs), mode 1775. Accounts cannot
    create at the top level; their namespaces are made there by `users add`."""
    ts = now_ns()
    t.put_inode(Inode(s.ROOT_INO, stat.S_IFDIR | ROOT_MODE, uid, gid, 2, 0, 0, ts, ts, ts))
    t.put("meta", s.META_NEXT_INO, s.u64(s.ROOT_INO + 1))


def create_node(
    t: Txn, caller: Caller, parent: int, name: bytes, mode: int, rdev: int = 0, target: bytes = b""
) -> Inode:
    """Create a file, directory, symlink, fifo, socket or device node in `parent`."""
    check_name(name)
    pdir = directory(t, parent)
    access.check_modify_dir(t, caller, pdir)
    if t.lookup(parent, name) is not None:
        raise AlreadyExists()
    kind = stat.S_IFMT(mode)
    if kind in (stat.S_IFCHR, stat.S_IFBLK) and not caller.is_root and not caller.kernel_checked:
        raise NotPermitted()
    if kind == stat.S_IFLNK and len(target) > SYMLINK_MAX:
        raise NameTooLong()
    if kind == stat.S_IFDIR and pdir.nlink >= LINK_MAX:
        raise NotPermitted("too many subdirectories")
    gid = caller.gid
    perm = stat.S_IMODE(mode)
    # A default ACL on the parent replaces the umask (from the kernel the umask is applied
    # already: pyfuse3 does not ask for FUSE_CAP_DONT_MASK; see docs/SEMANTICS.md).
    inherited = acl.inherit(t, pdir, kind, perm)
    if inherited is not None:
        perm, acl_xattrs = inherited
    else:
        acl_xattrs = []
        if kind != stat.S_IFLNK:
            perm &= ~caller.umask
    if pdir.mode & stat.S_ISGID:
        gid = pdir.gid
        if kind == stat.S_IFDIR:
            perm |= stat.S_ISGID
    ts = now_ns()
    inode = Inode(
        t.new_ino(),
        kind | perm,
        caller.uid,
        gid,
        2 if kind == stat.S_IFDIR else 1,
        len(target) if kind == stat.S_IFLNK else 0,
        rdev,
        ts,
        ts,
        ts,
    )
    t.put_inode(inode)
    for xname, value in acl_xattrs:
        t.put("xattrs", s.xattr_key(inode.ino, xname), value)
    if kind == stat.S_IFLNK:
        t.put("symlinks", s.inode_key(inode.ino), target)
    if kind == stat.S_IFDIR:
        t.put("parents", s.inode_key(inode.ino), s.u64(parent))
        pdir.nlink += 1
    t.add_entry(parent, name, inode.ino)
    pdir.mtime_ns = pdir.ctime_ns = ts
    t.put_inode(pdir)
    return inode


def readlink(t: Txn, ino: int) -> bytes:
    target = t.get("symlinks", s.inode_key(ino))
    if target is None:
        raise InvalidArgument("not a symbolic link")
    return target


def link(t: Txn, caller: Caller, ino: int, parent: int, name: bytes) -> Inode:
    check_name(name)
    inode = t.inode(ino)
    if inode.is_dir:
        raise NotPermitted("hard links to directories are not allowed")
    if inode.nlink == 0:
        raise NotFound()
    if inode.nlink >= LINK_MAX:
        raise NotPermitted("too many links")
    pdir = directory(t, parent)
    access.check_modify_dir(t, caller, pdir)
    if t.lookup(parent, name) is not None:
        raise AlreadyExists()
    access.check_link_source(t, caller, inode)
    zones.check_link(t, ino, parent)
    ts = now_ns()
    inode.nlink += 1
    inode.ctime_ns = ts
    t.put_inode(inode)
    t.add_entry(parent, name, ino)
    pdir.mtime_ns = pdir.ctime_ns = ts
    t.put_inode(pdir)
    return inode


def _drop_link(t: Txn, inode: Inode, ts: int) -> None:
    inode.nlink -= 2 if inode.is_dir else 1
    inode.nlink = max(inode.nlink, 0)
    inode.ctime_ns = ts
    t.put_inode(inode)
    if inode.is_dir:
        t.delete("parents", s.inode_key(inode.ino))


def unlink(t: Txn, caller: Caller, parent: int, name: bytes, *, rmdir: bool) -> Inode:
    """Remove a name; returns the inode it named (its nlink may now be 0)."""
    if name in (b".", b".."):
        raise InvalidArgument() if name == b"." else NotEmpty()
    if len(name) > NAME_MAX:
        raise NameTooLong()
    pdir = directory(t, parent)
    child = t.lookup(parent, name)
    if child is None:
        raise NotFound()
    victim = t.inode(child)
    access.check_delete(t, caller, pdir, victim)
    zones.check_not_namespace(t, child)
    if rmdir:
        if not victim.is_dir:
            raise NotADirectory()
        if t.has_entries(child):
            raise NotEmpty()
    elif victim.is_dir:
        raise IsADirectory()
    ts = now_ns()
    t.remove_entry(parent, name)
    _drop_link(t, victim, ts)
    if victim.is_dir:
        pdir.nlink -= 1
    pdir.mtime_ns = pdir.ctime_ns = ts
    t.put_inode(pdir)
    return victim


def _is_ancestor(t: Txn, ancestor: int, ino: int) -> bool:
    """Whether directory `ancestor` is `ino` or one of its parents."""
    while True:
        if ino == ancestor:
            return True
        if ino == s.ROOT_INO:
            return False
        up = t.get("parents", s.inode_key(ino))
        if up is None:
            return False
        ino = s.from_u64(up)


def rename(
    t: Txn, caller: Caller, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes, flags: int
) -> Inode | None:
    """Rename, honouring RENAME_NOREPLACE and RENAME_EXCHANGE.

    Returns the inode that lost its name (replaced target), if any.
    """
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise InvalidArgument("unsupported rename flags")
    check_name(new_name)
    if len(old_name) > NAME_MAX:
        raise NameTooLong()
    src_dir = directory(t, old_parent)
    dst_dir = src_dir if new_parent == old_parent else directory(t, new_parent)
    src_ino = t.lookup(old_parent, old_name)
    if src_ino is None:
        raise NotFound()
    src = t.inode(src_ino)
    dst_ino = t.lookup(new_parent, new_name)
    dst = t.inode(dst_ino) if dst_ino is not None else None
    zones.check_move(t, old_parent, new_parent)
    zones.check_not_namespace(t, src_ino)
    if dst_ino is not None:
        zones.check_not_namespace(t, dst_ino)
    access.check_delete(t, caller, src_dir, src)
    access.check_modify_dir(t, caller, dst_dir)
    if dst is not None:
        access.check_delete(t, caller, dst_dir, dst)
    if src.is_dir and new_parent != old_parent:
        access.check(t, caller, src, access.W_OK)  # its ".." changes
    ts = now_ns()

    if flags & RENAME_EXCHANGE:
        if dst is None:
            raise NotFound()
        if src.is_dir and _is_ancestor(t, src.ino, new_parent):
            raise InvalidArgument("cannot move a directory into itself")
        if dst.is_dir and _is_ancestor(t, dst.ino, old_parent):
            raise InvalidArgument("cannot move a directory into itself")
        _set_entry(t, old_parent, old_name, dst.ino)
        _set_entry(t, new_parent, new_name, src.ino)
        if new_parent != old_parent:
            _reparent(t, src, new_parent)
            _reparent(t, dst, old_parent)
            if src.is_dir != dst.is_dir:
                delta = 1 if src.is_dir else -1
                src_dir.nlink -= delta
                dst_dir.nlink += delta
        for node in (src, dst):
            node.ctime_ns = ts
            t.put_inode(node)
        _touch_dirs(t, src_dir, dst_dir, ts)
        return None

    if dst is not None:
        if flags & RENAME_NOREPLACE:
            raise AlreadyExists()
        if dst.ino == src.ino:
            return None  # two names of one inode: POSIX says do nothing
        if src.is_dir and not dst.is_dir:
            raise NotADirectory()
        if not src.is_dir and dst.is_dir:
            raise IsADirectory()
        if dst.is_dir and t.has_entries(dst.ino):
            raise NotEmpty()
    if src.is_dir and _is_ancestor(t, src.ino, new_parent):
        raise InvalidArgument("cannot move a directory into itself")

    if dst is not None:
        t.remove_entry(new_parent, new_name)
        _drop_link(t, dst, ts)
        if dst.is_dir:
            dst_dir.nlink -= 1
    t.remove_entry(old_parent, old_name)
    t.add_entry(new_parent, new_name, src.ino)
    if src.is_dir and new_parent != old_parent:
        _reparent(t, src, new_parent)
        src_dir.nlink -= 1
        dst_dir.nlink += 1
    src.ctime_ns = ts
    t.put_inode(src)
    _touch_dirs(t, src_dir, dst_dir, ts)
    return dst


def _set_entry(t: Txn, parent: int, name: bytes, child: int) -> None:
    t.remove_entry(parent, name)
    t.add_entry(parent, name, child)


def _reparent(t: Txn, inode: Inode, parent: int) -> None:
    if inode.is_dir:
        t.put("parents", s.inode_key(inode.ino), s.u64(parent))


def _touch_dirs(t: Txn, a: Inode, b: Inode, ts: int) -> None:
    a.mtime_ns = a.ctime_ns = ts
    t.put_inode(a)
    if b.ino != a.ino:
        b.mtime_ns = b.ctime_ns = ts
        t.put_inode(b)


# --- extended attributes ---------------------------------------------------------
# The two ACL names are kept by fs/acl.py (in step with the mode); every other name is
# stored as given, in the namespaces access.xattr_supported accepts.


def getxattr(t: Txn, caller: Caller, ino: int, name: bytes) -> bytes:
    inode = t.inode(ino)
    access.check_xattr(t, caller, inode, name, write=False)
    if name in acl.NAMES:
        return acl.read(t, inode, name)
    value = t.get("xattrs", s.xattr_key(ino, name))
    if value is None:
        raise NoAttribute()
    return value


def setxattr(t: Txn, caller: Caller, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
    if not name or len(name) > XATTR_NAME_MAX:
        raise NameTooLong() if name else InvalidArgument()
    if len(value) > XATTR_SIZE_MAX:
        raise InvalidArgument("extended attribute value too large", errno=7)  # E2BIG
    inode = t.inode(ino)
    access.check_xattr(t, caller, inode, name, write=True)
    key = s.xattr_key(ino, name)
    exists = t.get("xattrs", key) is not None
    if flags & 1 and exists:  # XATTR_CREATE
        raise AlreadyExists()
    if flags & 2 and not exists:  # XATTR_REPLACE
        raise NoAttribute()
    if name in acl.NAMES:
        acl.store(t, inode, name, value)
        if name == acl.ACCESS and not caller.is_root and not caller.in_group(inode.gid):
            inode.mode &= ~stat.S_ISGID  # as Linux's posix_acl_update_mode
    else:
        t.put("xattrs", key, value)
    inode.ctime_ns = now_ns()
    t.put_inode(inode)


def listxattr(t: Txn, caller: Caller, ino: int) -> list[bytes]:
    t.inode(ino)
    names = [k[8:] for k, _ in t.scan("xattrs", s.inode_key(ino))]
    return [n for n in names if access.xattr_listable(caller, n)]


def removexattr(t: Txn, caller: Caller, ino: int, name: bytes) -> None:
    inode = t.inode(ino)
    access.check_xattr(t, caller, inode, name, write=True)
    if name in acl.NAMES:
        acl.remove(t, inode, name)
    elif not t.delete("xattrs", s.xattr_key(ino, name)):
        raise NoAttribute()
    inode.ctime_ns = now_ns()
    t.put_inode(inode)


def forget_inode_metadata(t: Txn, ino: int) -> None:
    """Delete an inode record and everything keyed by it except its block map."""
    t.delete("inodes", s.inode_key(ino))
    t.delete("symlinks", s.inode_key(ino))
    t.delete("parents", s.inode_key(ino))
    t.delete("orphans", s.inode_key(ino))
    for k, _ in list(t.scan("xattrs", s.inode_key(ino))):
        t.delete("xattrs", k)
