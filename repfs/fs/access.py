"""Permission checks: the one place that decides who may do what.

On the mount the kernel checks POSIX permissions itself (`default_permissions` and POSIX
ACLs): it refuses what the mode bits and ACLs refuse before a request reaches repfs, also
for names and FIFOs it handles without asking. A `Caller` built from a FUSE request says
so (`kernel_checked`), and every check here then passes: the kernel has decided, with
knowledge repfs lacks (capabilities such as CAP_FOWNER, the kill-priv SETATTR it sends with
a writer's credentials).

For callers that do not come through the kernel (the HTTPS API, background sweepers,
admin actions, tests of the core) this module is a complete evaluator of the same rules:
mode bits, the POSIX.1e ACL with its mask (Linux's algorithm, including its shortcut
when the mask is empty), sticky directories, owner-only operations, supplementary groups
and root's overrides. A differential test (tests/mount/test_permissions.py) runs one table
of operations through the mount and through this module and requires the same answers.

repfs may refuse more than the kernel (roles, holds, locks, quotas: later additions) on
the requests the kernel forwards; never less.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from repfs.errors import AccessDenied, NoAttribute, NotPermitted, NotSupported
from repfs.fs import acl as acls
from repfs.meta.records import Inode
from repfs.meta.store import Txn

R_OK, W_OK, X_OK = os.R_OK, os.W_OK, os.X_OK


@dataclass(frozen=True)
class Caller:
    """Who is asking: from a FUSE request (`kernel_checked`), or another caller."""

    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)
    umask: int = 0o022
    kernel_checked: bool = False

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


ROOT = Caller(0, 0)


def _acl_allows(caller: Caller, inode: Inode, want: int, acl: acls.Acl) -> bool | None:
    """Linux's posix_acl_permission for a caller who is not the owner; None: no entry applies."""
    mask = acl.perm(acls.MASK) if acl.get(acls.MASK) is not None else 7
    found = False
    for e in acl.entries:
        if e.tag == acls.USER and e.qualifier == caller.uid:
            return (e.perm & mask & want) == want
        if e.tag in (acls.GROUP_OBJ, acls.GROUP):
            gid = inode.gid if e.tag == acls.GROUP_OBJ else e.qualifier
            if caller.in_group(gid):
                found = True
                if (e.perm & want) == want:
                    return (e.perm & mask & want) == want
        if e.tag == acls.OTHER:
            return False if found else (e.perm & want) == want
    return None


def allowed(caller: Caller, inode: Inode, want: int, acl: acls.Acl | None = None) -> bool:
    """Whether `caller` has every access bit in `want` (R_OK|W_OK|X_OK) on `inode`, whose
    effective access ACL is `acl` (None: the mode alone)."""
    want &= 7
    mode = inode.mode
    if caller.uid == inode.uid and not caller.is_root:
        return (want & ~(mode >> 6) & 7) == 0
    if caller.is_root:
        # root may read and write anything, search any directory, and execute a file
        # only if someone may
        return not (want & X_OK and not inode.is_dir and not mode & 0o111)
    if acl is not None and mode & stat.S_IRWXG:  # Linux skips the ACL when the mask is empty
        verdict = _acl_allows(caller, inode, want, acl)
        if verdict is not None:
            return verdict
    bits = (mode >> 3) & 7 if caller.in_group(inode.gid) else mode & 7
    return (want & ~bits) == 0


def permitted(t: Txn, caller: Caller, inode: Inode, want: int) -> bool:
    """`allowed` with the inode's ACL read from the metadata, on the mode the kernel is
    shown (shares widen its group bits, which are the mask)."""
    mode, acl = acls.shown(t, inode)
    return allowed(caller, inode if mode == inode.mode else replace(inode, mode=mode), want, acl)


def check(t: Txn, caller: Caller, inode: Inode, want: int) -> None:
    if caller.kernel_checked:
        return
    if not permitted(t, caller, inode, want):
        raise AccessDenied()


def check_search(t: Txn, caller: Caller, directory: Inode) -> None:
    """May `caller` look names up in `directory`?"""
    check(t, caller, directory, X_OK)


def check_modify_dir(t: Txn, caller: Caller, directory: Inode) -> None:
    """May `caller` add or remove names in `directory`?"""
    check(t, caller, directory, W_OK | X_OK)


def check_delete(t: Txn, caller: Caller, directory: Inode, victim: Inode) -> None:
    """May `caller` remove or replace `victim` in `directory` (sticky bit aware)?"""
    if caller.kernel_checked:
        return
    check_modify_dir(t, caller, directory)
    if directory.mode & stat.S_ISVTX and not caller.is_root and caller.uid not in (directory.uid, victim.uid):
        raise NotPermitted()


def check_owner(caller: Caller, inode: Inode) -> None:
    """Operations only the owner (or root) may do: chmod, setting ACLs, explicit times."""
    if not caller.kernel_checked and not caller.is_root and caller.uid != inode.uid:
        raise NotPermitted()


def check_times(t: Txn, caller: Caller, inode: Inode, *, explicit: bool) -> None:
    """utimensat: explicit times need the owner (EPERM); "now" needs the owner or write access (EACCES)."""
    if caller.kernel_checked or caller.is_root or caller.uid == inode.uid:
        return
    if explicit:
        raise NotPermitted()
    check(t, caller, inode, W_OK)


def check_link_source(t: Txn, caller: Caller, inode: Inode) -> None:
    """Hard links to others' files: the rules of Linux's fs.protected_hardlinks."""
    if caller.kernel_checked or caller.is_root or caller.uid == inode.uid:
        return
    setgid_exec = inode.mode & stat.S_ISGID and inode.mode & stat.S_IXGRP
    if not inode.is_reg or inode.mode & stat.S_ISUID or setgid_exec or not permitted(t, caller, inode, R_OK | W_OK):
        raise NotPermitted()


def check_chown(caller: Caller, inode: Inode, uid: int | None, gid: int | None) -> None:
    """Only root changes the owner; the owner may change the group to one of its own groups.
    A non-owner is refused even a chown to the current owner and group (as on Linux)."""
    if caller.kernel_checked or caller.is_root or (uid is None and gid is None):
        return
    if caller.uid != inode.uid:
        raise NotPermitted()
    if uid is not None and uid != inode.uid:
        raise NotPermitted()
    if gid is not None and gid != inode.gid and not caller.in_group(gid):
        raise NotPermitted()


def chmod_mode(caller: Caller, inode: Inode, new_mode: int) -> int:
    """The permission bits chmod applies: setgid dropped for a caller outside the group.

    From the kernel the mode arrives decided (it drops that setgid bit itself, and its
    kill-priv SETATTR clears S_ISUID/S_ISGID with a non-owner writer's credentials)."""
    mode = new_mode & 0o7777
    if caller.kernel_checked:
        return mode
    check_owner(caller, inode)
    if not caller.is_root and not caller.in_group(inode.gid):
        mode &= ~stat.S_ISGID
    return mode


def killed_privileges(caller: Caller, inode: Inode) -> int:
    """The mode after a write or truncate by `caller`, as Linux leaves it: S_ISUID goes, and
    S_ISGID when the group may execute or the writer is not in the file's group; root keeps
    both. From the kernel the first two arrive as a kill-priv SETATTR already; the third
    does not (FUSE's own rule is older), so repfs applies the whole rule to every caller."""
    mode = inode.mode
    if caller.is_root or not inode.is_reg or not mode & (stat.S_ISUID | stat.S_ISGID):
        return mode
    mode &= ~stat.S_ISUID
    if mode & stat.S_IXGRP or not caller.in_group(inode.gid):
        mode &= ~stat.S_ISGID
    return mode


def mode_after_chown(caller: Caller, inode: Inode) -> int:
    """The mode after a chown of a non-directory by a caller not from the kernel (which
    sends the mode it wants with the chown): S_ISUID goes; S_ISGID when the group may
    execute, or when the caller is neither root nor in the file's group."""
    mode = inode.mode
    if caller.kernel_checked or inode.is_dir:
        return mode
    mode &= ~stat.S_ISUID
    if mode & stat.S_IXGRP or not (caller.is_root or caller.in_group(inode.gid)):
        mode &= ~stat.S_ISGID
    return mode


# --- extended attributes -------------------------------------------------------------

XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")


def xattr_supported(name: bytes) -> None:
    """The namespaces repfs stores: user.*, trusted.*, security.* and the two ACLs."""
    if name in acls.NAMES:
        return
    if not name.startswith(XATTR_NAMESPACES):
        raise NotSupported(f"extended attribute namespace of {name!r} is not supported")


def check_xattr(t: Txn, caller: Caller, inode: Inode, name: bytes, *, write: bool) -> None:
    """Linux's rules for reading and writing an extended attribute.

    user.*: read/write permission; writable on regular files and directories only, and on
    a sticky directory only by its owner. trusted.*: root only. security.*: anyone reads,
    root writes. ACLs: anyone reads, the owner writes."""
    xattr_supported(name)
    if caller.kernel_checked:
        return
    if name in acls.NAMES:
        if write:
            check_owner(caller, inode)
        return
    if name.startswith(b"trusted."):
        if not caller.is_root:
            if write:
                raise NotPermitted()
            raise NoAttribute()
        return
    if name.startswith(b"security."):
        if write and not caller.is_root:
            raise NotPermitted()
        return
    if not (inode.is_reg or inode.is_dir):
        if write:
            raise NotPermitted()
        raise NoAttribute()
    if write and inode.is_dir and inode.mode & stat.S_ISVTX and not caller.is_root and caller.uid != inode.uid:
        raise NotPermitted()
    check(t, caller, inode, W_OK if write else R_OK)


def xattr_listable(caller: Caller, name: bytes) -> bool:
    """listxattr shows trusted.* to root only."""
    return caller.is_root or not name.startswith(b"trusted.")


def open_access(flags: int) -> int:
    """The access bits an open(2) with `flags` needs."""
    acc = flags & os.O_ACCMODE
    want = 0
    if acc in (os.O_RDONLY, os.O_RDWR):
        want |= R_OK
    if acc in (os.O_WRONLY, os.O_RDWR) or flags & os.O_TRUNC:
        want |= W_OK
    return want
