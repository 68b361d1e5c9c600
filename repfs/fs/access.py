"""Permission checks: the one place that decides who may do what.

The FUSE layer passes the caller (uid, gid, supplementary groups) down; the filesystem
core asks this module before every operation. The kernel's `default_permissions` is
not used, so per-user namespaces and share roles (a later addition) are enforced here,
on top of the POSIX mode bits.

Without `default_permissions` the kernel does not check search permission on path
components it has cached, so `names_cacheable` decides which directory entries the
kernel may cache at all: only those whose directory every user may search.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from repfs.errors import AccessDenied, NotPermitted
from repfs.meta.records import Inode

R_OK, W_OK, X_OK = os.R_OK, os.W_OK, os.X_OK


@dataclass(frozen=True)
class Caller:
    """Who is asking: from the FUSE request context, or root for internal work."""

    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)
    umask: int = 0o022

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


ROOT = Caller(0, 0)


def allowed(caller: Caller, inode: Inode, want: int) -> bool:
    """Whether `caller` has every access bit in `want` (R_OK|W_OK|X_OK) on `inode`."""
    if caller.is_root:
        # root may read and write anything; it may execute only if someone may
        if want & X_OK and not inode.is_dir and not inode.mode & 0o111:
            return False
        return True
    mode = inode.mode
    if caller.uid == inode.uid:
        bits = (mode >> 6) & 7
    elif caller.in_group(inode.gid):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return (bits & want) == want


def check(caller: Caller, inode: Inode, want: int) -> None:
    if not allowed(caller, inode, want):
        raise AccessDenied()


def check_search(caller: Caller, directory: Inode) -> None:
    """May `caller` look names up in `directory`?"""
    check(caller, directory, X_OK)


def names_cacheable(directory: Inode) -> bool:
    """May the kernel cache names found in `directory` (and so skip asking us on a path walk)?"""
    return bool(directory.mode & stat.S_IXOTH)


def check_modify_dir(caller: Caller, directory: Inode) -> None:
    """May `caller` add or remove names in `directory`?"""
    check(caller, directory, W_OK | X_OK)


def check_delete(caller: Caller, directory: Inode, victim: Inode) -> None:
    """May `caller` remove or replace `victim` in `directory` (sticky bit aware)?"""
    check_modify_dir(caller, directory)
    if directory.mode & stat.S_ISVTX and not caller.is_root and caller.uid not in (directory.uid, victim.uid):
        raise NotPermitted()


def check_owner(caller: Caller, inode: Inode) -> None:
    """Operations only the owner (or root) may do: chmod, utimes to arbitrary values."""
    if not caller.is_root and caller.uid != inode.uid:
        raise NotPermitted()


def check_link_source(caller: Caller, inode: Inode) -> None:
    """Hard links to others' files: the rules of Linux's fs.protected_hardlinks."""
    if caller.is_root or caller.uid == inode.uid:
        return
    setgid_exec = inode.mode & stat.S_ISGID and inode.mode & stat.S_IXGRP
    if not inode.is_reg or inode.mode & stat.S_ISUID or setgid_exec or not allowed(caller, inode, R_OK | W_OK):
        raise NotPermitted()


def check_chown(caller: Caller, inode: Inode, uid: int | None, gid: int | None) -> None:
    if caller.is_root:
        return
    if uid is not None and uid != inode.uid:
        raise NotPermitted()
    if gid is not None and gid != inode.gid:
        if caller.uid != inode.uid or not caller.in_group(gid):
            raise NotPermitted()


def chmod_mode(caller: Caller, inode: Inode, new_mode: int) -> int:
    """The permission bits actually applied by chmod (setgid dropped for outsiders)."""
    check_owner(caller, inode)
    mode = new_mode & 0o7777
    if not caller.is_root and not caller.in_group(inode.gid):
        mode &= ~stat.S_ISGID
    return mode


def check_xattr(caller: Caller, inode: Inode, name: bytes, write: bool) -> None:
    """user.* needs read/write access; writing other namespaces needs root.

    Reads of other namespaces pass (a missing attribute then answers ENODATA, which is
    what `ls -l` expects when it asks for security.selinux or system.posix_acl_access).
    """
    if name.startswith(b"user."):
        if write and not (inode.is_reg or inode.is_dir):
            raise NotPermitted()
        check(caller, inode, W_OK if write else R_OK)
        return
    if write:
        if not caller.is_root or name.startswith(b"system."):
            raise NotPermitted()
        if not name.startswith((b"trusted.", b"security.")):
            raise NotPermitted()


def open_access(flags: int) -> int:
    """The access bits an open(2) with `flags` needs."""
    acc = flags & os.O_ACCMODE
    want = 0
    if acc in (os.O_RDONLY, os.O_RDWR):
        want |= R_OK
    if acc in (os.O_WRONLY, os.O_RDWR) or flags & os.O_TRUNC:
        want |= W_OK
    return want
