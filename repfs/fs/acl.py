"""POSIX.1e access control lists: the xattr format, the mode they imply, inheritance.

The kernel hands ACLs over as the values of `system.posix_acl_access` and
`system.posix_acl_default` (a little-endian u32 version 2, then one 8-byte entry per
line: u16 tag, u16 permission bits, u32 uid or gid). With `enable_acl` the kernel checks
them itself; repfs stores them, keeps the mode in step and applies default ACLs to what is
created, as Linux filesystems do. `fs/access.py` evaluates them for callers that do not
come through the kernel.

How an access ACL and the mode stay in step (one truth, never two): the mode's owner,
group and other bits ARE the ACL's USER_OBJ, MASK (or GROUP_OBJ when there is no mask)
and OTHER entries. The stored ACL keeps its named entries and GROUP_OBJ; the effective
ACL is the stored one with those three entries read from the current mode, so a chmod
changes the mask without rewriting anything. An ACL that says no more than the mode is
not stored at all (then `ls -l` shows no `+`).

Symbolic links never have ACLs (as on Linux). The small interface the rest of repfs
uses: `effective_access(t, inode)`, `default_of(t, inode)`, `store(t, inode, name,
value)`, `remove(t, inode, name)`, `inherit(t, parent, kind, perm)`.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from repfs.errors import AccessDenied, InvalidArgument, NoAttribute, NotSupported
from repfs.fs import shares
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)

VERSION = 2
USER_OBJ = 0x01
USER = 0x02
GROUP_OBJ = 0x04
GROUP = 0x08
MASK = 0x10
OTHER = 0x20
UNDEFINED_ID = 0xFFFFFFFF
_TAGS = (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER)

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


@dataclass(frozen=True, order=True)
class Entry:
    tag: int
    qualifier: int  # uid for USER, gid for GROUP, UNDEFINED_ID otherwise
    perm: int  # rwx bits: 4, 2, 1


@dataclass(frozen=True)
class Acl:
    """An ACL as a sorted tuple of entries (tag order, then qualifier)."""

    entries: tuple[Entry, ...]

    def get(self, tag: int) -> Entry | None:
        return next((e for e in self.entries if e.tag == tag), None)

    def named(self, tag: int) -> list[Entry]:
        return [e for e in self.entries if e.tag == tag]

    @property
    def extended(self) -> bool:
        """Whether it says more than a mode can (named entries, or a mask)."""
        return any(e.tag in (USER, GROUP, MASK) for e in self.entries)

    def perm(self, tag: int) -> int:
        e = self.get(tag)
        return e.perm if e is not None else 0

    def mode_bits(self) -> int:
        """The permission bits of a mode equivalent to this ACL (group bits: the mask)."""
        group = self.perm(MASK) if self.get(MASK) is not None else self.perm(GROUP_OBJ)
        return (self.perm(USER_OBJ) << 6) | (group << 3) | self.perm(OTHER)

    def with_mode(self, mode: int) -> Acl:
        """This ACL with USER_OBJ, MASK (or GROUP_OBJ) and OTHER taken from `mode`."""
        has_mask = self.get(MASK) is not None
        out = []
        for e in self.entries:
            if e.tag == USER_OBJ:
                e = Entry(USER_OBJ, UNDEFINED_ID, (mode >> 6) & 7)
            elif e.tag == OTHER:
                e = Entry(OTHER, UNDEFINED_ID, mode & 7)
            elif e.tag == MASK or (e.tag == GROUP_OBJ and not has_mask):
                e = Entry(e.tag, UNDEFINED_ID, (mode >> 3) & 7)
            out.append(e)
        return Acl(tuple(out))

    def pack(self) -> bytes:
        return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.qualifier) for e in self.entries)


def from_mode(mode: int) -> Acl:
    """The three-entry ACL a mode stands for."""
    return Acl(
        (
            Entry(USER_OBJ, UNDEFINED_ID, (mode >> 6) & 7),
            Entry(GROUP_OBJ, UNDEFINED_ID, (mode >> 3) & 7),
            Entry(OTHER, UNDEFINED_ID, mode & 7),
        )
    )


def parse(value: bytes) -> Acl:
    """Parse and validate an ACL in the xattr format (EINVAL for anything malformed)."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise InvalidArgument("malformed ACL")
    (version,) = _HEADER.unpack_from(value)
    if version != VERSION:
        raise InvalidArgument(f"ACL version {version} is not supported")
    entries = []
    for off in range(_HEADER.size, len(value), _ENTRY.size):
        tag, perm, qualifier = _ENTRY.unpack_from(value, off)
        if tag not in _TAGS or perm & ~7:
            raise InvalidArgument("malformed ACL entry")
        if tag not in (USER, GROUP):
            qualifier = UNDEFINED_ID
        elif qualifier == UNDEFINED_ID:
            raise InvalidArgument("a named ACL entry needs an id")
        entries.append(Entry(tag, qualifier, perm))
    return validate(entries)


def validate(entries: Iterable[Entry]) -> Acl:
    """The rules of a valid ACL: one each of USER_OBJ, GROUP_OBJ and OTHER, named entries
    unique, and a MASK exactly when there are named entries (a lone MASK is allowed)."""
    acl = Acl(tuple(sorted(entries)))
    counts = {tag: len(acl.named(tag)) for tag in _TAGS}
    if counts[USER_OBJ] != 1 or counts[GROUP_OBJ] != 1 or counts[OTHER] != 1 or counts[MASK] > 1:
        raise InvalidArgument("an ACL needs one owner, one group and one other entry")
    for tag in (USER, GROUP):
        ids = [e.qualifier for e in acl.named(tag)]
        if len(ids) != len(set(ids)):
            raise InvalidArgument("an ACL names a user or group twice")
    if (counts[USER] or counts[GROUP]) and not counts[MASK]:
        raise InvalidArgument("an ACL with named entries needs a mask")
    return acl


# --- stored ACLs -------------------------------------------------------------------------


def _stored(t: Txn, ino: int, name: bytes) -> Acl | None:
    raw = t.get("xattrs", s.xattr_key(ino, name))
    return parse(raw) if raw is not None else None


def effective_access(t: Txn, inode: Inode) -> Acl | None:
    """The inode's access ACL as the kernel should see it; None when the mode says it all.

    The stored ACL with the mode's bits, plus the entries shares give (`shares.grants`),
    the mask widened to cover them."""
    if inode.is_symlink:
        return None
    stored = _stored(t, inode.ino, ACCESS)
    acl = stored.with_mode(inode.mode) if stored is not None else None
    extra = shares.grants(t, inode)
    if not extra:
        return acl
    return with_grants(acl if acl is not None else from_mode(inode.mode), extra)


def with_grants(acl: Acl, extra: dict[int, int]) -> Acl:
    """`acl` with a named user entry per uid in `extra`, and a mask wide enough for them.
    The entries the old mask limited (the group, named groups, other named users) are
    capped at it first, so widening the mask gives them nothing."""
    old_mask = acl.get(MASK)
    cap = old_mask.perm if old_mask is not None else 7
    entries = []
    for e in acl.entries:
        if e.tag == MASK:
            continue
        if e.tag in (GROUP_OBJ, GROUP) or (e.tag == USER and e.qualifier not in extra):
            e = Entry(e.tag, e.qualifier, e.perm & cap)
        elif e.tag == USER:
            e = Entry(USER, e.qualifier, (e.perm & cap) | extra[e.qualifier])
        entries.append(e)
    have = {e.qualifier for e in entries if e.tag == USER}
    entries += [Entry(USER, uid, perm) for uid, perm in extra.items() if uid not in have]
    mask = 0
    for e in entries:
        if e.tag in (USER, GROUP, GROUP_OBJ):
            mask |= e.perm
    entries.append(Entry(MASK, UNDEFINED_ID, mask))
    return Acl(tuple(sorted(entries)))


def _without_grants(acl: Acl, extra: dict[int, int], stored_group: int) -> Acl:
    """An ACL written back (setfacl reads the computed one, changes it, writes it all):
    the named entries exactly as shares give them are not stored, and neither are the
    mask bits only they needed, so a revoke takes them away."""
    if not extra:
        return acl
    only_grants = 0
    for perm in extra.values():
        only_grants |= perm
    only_grants &= ~stored_group
    kept = []
    for e in acl.entries:
        if e.tag == USER and extra.get(e.qualifier) == e.perm:
            continue
        if e.tag == MASK:
            e = Entry(MASK, UNDEFINED_ID, e.perm & ~only_grants)
        kept.append(e)
    return Acl(tuple(kept))


def shown(t: Txn, inode: Inode) -> tuple[int, Acl | None]:
    """The mode the kernel is shown, and the effective ACL. The group bits are the ACL's
    mask, which shares may widen (the kernel skips an ACL whose mask is empty)."""
    acl = effective_access(t, inode)
    if acl is None or acl.get(MASK) is None:
        return inode.mode, acl
    return (inode.mode & ~0o070) | (acl.perm(MASK) << 3), acl


def shown_mode(t: Txn, inode: Inode) -> int:
    if inode.is_symlink or not shares.in_use(t):
        return inode.mode
    return shown(t, inode)[0]


def chmod_keeping_grants(t: Txn, inode: Inode, mode: int) -> None:
    """A chmod of an inode shares add entries to. Its group bits arrive as the mask the
    kernel was shown (tools send back what they read): like chmod on any file with an ACL
    they set the mask, and the group entry keeps its own bits, so nothing the shares
    gave stays with the group after a revoke. The caller puts the inode afterwards."""
    if not shares.grants(t, inode):
        inode.mode = mode
        return
    key = s.xattr_key(inode.ino, ACCESS)
    stored = _stored(t, inode.ino, ACCESS)
    if stored is None:  # the mode alone so far: its group bits were the group's
        base = from_mode(inode.mode)
        stored = Acl(tuple(sorted([*base.entries, Entry(MASK, UNDEFINED_ID, (inode.mode >> 3) & 7)])))
    entries = [e for e in stored.entries if e.tag != MASK] + [Entry(MASK, UNDEFINED_ID, (mode >> 3) & 7)]
    t.put("xattrs", key, Acl(tuple(sorted(entries))).pack())
    inode.mode = mode


def default_of(t: Txn, inode: Inode) -> Acl | None:
    """A directory's default ACL (what its new entries inherit), if it has one."""
    return _stored(t, inode.ino, DEFAULT) if inode.is_dir else None


def read(t: Txn, inode: Inode, name: bytes) -> bytes:
    """The value of `system.posix_acl_access` or `..._default` (ENODATA when there is none)."""
    acl = effective_access(t, inode) if name == ACCESS else default_of(t, inode)
    if acl is None:
        raise NoAttribute()
    return acl.pack()


def listed(t: Txn, inode: Inode) -> list[bytes]:
    """The ACL names listxattr shows for `inode` (the access ACL also when only shares make it)."""
    out = [n for n in NAMES if t.get("xattrs", s.xattr_key(inode.ino, n)) is not None]
    if ACCESS not in out and not inode.is_symlink and shares.in_use(t) and shares.grants(t, inode):
        out.insert(0, ACCESS)
    return out


def store(t: Txn, inode: Inode, name: bytes, value: bytes) -> None:
    """Set an ACL from its xattr value; the caller puts the (changed) inode afterwards.

    An access ACL sets the mode's permission bits; one equivalent to a mode is not kept.
    """
    if inode.is_symlink:
        raise NotSupported("symbolic links have no ACLs")
    acl = parse(value)
    key = s.xattr_key(inode.ino, name)
    if name == DEFAULT:
        if not inode.is_dir:
            raise AccessDenied("only directories have a default ACL")
        t.put("xattrs", key, acl.pack())
        return
    acl = _without_grants(acl, shares.grants(t, inode), (inode.mode >> 3) & 7)
    inode.mode = (inode.mode & ~0o777) | acl.mode_bits()
    if acl.extended:
        t.put("xattrs", key, acl.pack())
    else:
        t.delete("xattrs", key)


def remove(t: Txn, inode: Inode, name: bytes) -> None:
    """Remove an ACL (the mode stays as it is, as on Linux)."""
    if not t.delete("xattrs", s.xattr_key(inode.ino, name)):
        raise NoAttribute()


def inherit(t: Txn, parent: Inode, kind: int, perm: int) -> tuple[int, list[tuple[bytes, bytes]]] | None:
    """What a new node of `kind` with permission bits `perm` gets from `parent`'s default
    ACL: its permission bits and the ACL xattrs to store. None: no default ACL, so the
    caller applies the umask instead (POSIX: a default ACL replaces the umask)."""
    if kind == stat.S_IFLNK:
        return None
    default = default_of(t, parent)
    if default is None:
        return None
    masked = []
    has_mask = default.get(MASK) is not None
    for e in default.entries:
        if e.tag == USER_OBJ:
            e = Entry(e.tag, e.qualifier, e.perm & (perm >> 6) & 7)
        elif e.tag == OTHER:
            e = Entry(e.tag, e.qualifier, e.perm & perm & 7)
        elif e.tag == MASK or (e.tag == GROUP_OBJ and not has_mask):
            e = Entry(e.tag, e.qualifier, e.perm & (perm >> 3) & 7)
        masked.append(e)
    access = Acl(tuple(masked))
    out: list[tuple[bytes, bytes]] = []
    if access.extended:
        out.append((ACCESS, access.pack()))
    if kind == stat.S_IFDIR:
        out.append((DEFAULT, default.pack()))
    return (perm & ~0o777) | access.mode_bits(), out
