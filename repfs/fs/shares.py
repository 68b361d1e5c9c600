"""Shares: an owner lets other accounts at a file or a folder (and everything in it, also
what is made there later) as `reader`, `editor` or `master` (seed 001).

The share table is the truth. What the kernel checks is computed from it, per inode, and
nothing is rewritten per file (sharing a folder of 100,000 files is one row):

- every grantee of a share on the inode or on a folder above it gets a named user entry in
  the inode's access ACL: `r--` (files) or `r-x` (folders) for a reader, `rw-` or `rwx`
  for an editor or master;
- every folder on the way from the namespace's top down to a shared item gets `--x` for
  that item's grantees, so they can reach it without listing the owner's folders;
- the namespace's account gets `rw-`/`rwx` on what others made in its namespace: the
  owner can do everything;
- the mask widens to cover the entries, and so do the group bits of the mode the kernel
  sees (they are the mask). `grants` returns the entries; `repfs.fs.acl` merges them.

What POSIX cannot say repfs refuses itself (`check_change`): in another account's
namespace, a grantee may unlink, rename, chmod, chown or set ACLs only on what it made.

| database | key | value |
|---|---|---|
| shares | item ino (u64) ‖ grantee uid (u64) | `Share` (versioned JSON) |
| shares_by_grantee | grantee uid (u64) ‖ item ino (u64) | empty |
| shares_in | namespace ino (u64) ‖ item ino (u64) ‖ grantee uid (u64) | empty |

An item never leaves its namespace (a rename between namespaces is EXDEV), so a share's
namespace, kept in its record, stays true.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import asdict, dataclass

from repfs.errors import AccessDenied, InvalidArgument, NotPermitted
from repfs.fs import folders, zones
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

RECORD_VERSION = 1
ROLES = ("reader", "editor", "master")
RANK = {role: i for i, role in enumerate(ROLES, 1)}
FILE_PERM = {"reader": 4, "editor": 6, "master": 6}
DIR_PERM = {"reader": 5, "editor": 7, "master": 7}
SEARCH = 1  # --x: through a folder to a shared item below it

_KEY = struct.Struct(">QQ")
_IN = struct.Struct(">QQQ")


@dataclass(frozen=True)
class Share:
    ino: int
    grantee: str  # account name
    uid: int  # the grantee account's uid (stable: checked against the host at mount)
    role: str
    by: str  # who shared it: the owner's or a master's account name, or "root"
    since: float
    namespace: int  # the namespace directory the item lies in

    def pack(self) -> bytes:
        data = asdict(self)
        del data["ino"], data["uid"]  # in the key
        return json.dumps({"v": RECORD_VERSION, **data}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, key: bytes, raw: bytes) -> Share:
        ino, uid = _KEY.unpack(key)
        data = json.loads(raw)
        version = data.pop("v", None)
        if version != RECORD_VERSION:
            raise ValueError(f"share record version {version} is not known")
        return cls(ino=ino, uid=uid, **data)


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {role!r}")


# --- the table -----------------------------------------------------------------------------


def in_use(t: Txn) -> bool:
    """Whether this filesystem has ever had a share (one read: the cost of the common
    case). From the first share on, every inode's ACL is computed: accounts may have
    made files in each other's namespaces, which their owners can reach through it,
    also once the last share is gone."""
    return t.get("meta", s.META_SHARING) is not None


def mark_in_use(t: Txn) -> None:
    t.put("meta", s.META_SHARING, b"1")


def on_item(t: Txn, ino: int) -> list[Share]:
    return [Share.unpack(k, v) for k, v in t.scan("shares", s.u64(ino))]


def get(t: Txn, ino: int, uid: int) -> Share | None:
    raw = t.get("shares", _KEY.pack(ino, uid))
    return Share.unpack(_KEY.pack(ino, uid), raw) if raw is not None else None


def of_grantee(t: Txn, uid: int) -> list[Share]:
    out = []
    for k, _ in t.scan("shares_by_grantee", s.u64(uid)):
        _, ino = _KEY.unpack(k)
        share = get(t, ino, uid)
        if share is not None:
            out.append(share)
    return out


def in_namespace(t: Txn, namespace: int) -> list[tuple[int, int]]:
    """(item ino, grantee uid) of every share of an item in `namespace`."""
    return [_IN.unpack(k)[1:] for k, _ in t.scan("shares_in", s.u64(namespace))]


def every(t: Txn) -> list[Share]:
    return [Share.unpack(k, v) for k, v in t.scan("shares", b"")]


def put(t: Txn, share: Share) -> None:
    t.put("shares", _KEY.pack(share.ino, share.uid), share.pack())
    t.put("shares_by_grantee", _KEY.pack(share.uid, share.ino), b"")
    t.put("shares_in", _IN.pack(share.namespace, share.ino, share.uid), b"")


def delete(t: Txn, share: Share) -> None:
    t.delete("shares", _KEY.pack(share.ino, share.uid))
    t.delete("shares_by_grantee", _KEY.pack(share.uid, share.ino))
    t.delete("shares_in", _IN.pack(share.namespace, share.ino, share.uid))


def forget_item(t: Txn, ino: int) -> None:
    """An inode freed: its shares go with it."""
    for share in on_item(t, ino):
        delete(t, share)


def forget_grantee(t: Txn, uid: int) -> None:
    """An account removed: the shares it was given go with it."""
    for share in of_grantee(t, uid):
        delete(t, share)


# --- where an item lies ----------------------------------------------------------------------


def parents_of(t: Txn, inode: Inode) -> list[int]:
    """The folders holding `inode`: its parent (folders), or the parent of each of its names."""
    if inode.is_dir:
        up = t.get("parents", s.inode_key(inode.ino))
        return [s.from_u64(up)] if up is not None else []
    return sorted({parent for parent, _ in t.links_of(inode.ino)})


def folder_chain(t: Txn, folder: int) -> list[int]:
    """`folder` and every folder above it, up to (not including) the root."""
    return folders.chain(t, folder)


def namespace_of_item(t: Txn, ino: int) -> int | None:
    inode = t.inode_or_none(ino)
    if inode is None:
        return None
    if inode.is_dir:
        return zones.namespace_of(t, ino)
    for parent in parents_of(t, inode):
        found = zones.namespace_of(t, parent)
        if found is not None:
            return found
    return None


def above(t: Txn, inode: Inode) -> set[int]:
    """The inode and every folder above it (for a file: above each of its names)."""
    out = {inode.ino}
    for parent in parents_of(t, inode):
        out.update(folder_chain(t, parent))
    return out


# --- what the kernel is shown -----------------------------------------------------------------
# Per folder, what shares on it and above it give, and its namespace: computed once and
# kept in the metadata store's policy memo (read transactions only), which every commit
# that changes folders, namespaces, shares or accounts empties. A stat then costs a few
# reads whatever the depth.


@dataclass(frozen=True)
class FolderView:
    namespace: int | None
    roles: dict[int, str]  # uid → the strongest role shares on this folder or above give


_OUTSIDE = FolderView(None, {})


def _stronger(a: str | None, b: str) -> str:
    return b if a is None or RANK[b] > RANK[a] else a


def folder_view(t: Txn, folder: int) -> FolderView:
    def step(f: int, view: FolderView) -> FolderView:
        roles = dict(view.roles)
        for share in on_item(t, f):
            roles[share.uid] = _stronger(roles.get(share.uid), share.role)
        return FolderView(f if zones.owner(t, f) is not None else view.namespace, roles)

    return folders.inherited(t, folder, "folder", _OUTSIDE, step)


def _through(t: Txn, namespace: int) -> dict[int, set[int]]:
    """folder → the grantees that go through it to an item shared below it."""
    memo = t.memo
    hit = memo.get(("through", namespace)) if memo is not None else None
    if isinstance(hit, dict):
        return hit
    out: dict[int, set[int]] = {}
    for item, uid in in_namespace(t, namespace):
        inode = t.inode_or_none(item)
        if inode is None:
            continue
        for folder in above(t, inode) - {item}:
            out.setdefault(folder, set()).add(uid)
    if memo is not None:
        memo[("through", namespace)] = out
    return out


def roles_on(t: Txn, inode: Inode) -> tuple[dict[int, str], int | None]:
    """uid → strongest role on `inode` (shares on it or a folder above), and its namespace."""
    if inode.is_dir:
        view = folder_view(t, inode.ino)
        return view.roles, view.namespace
    roles: dict[int, str] = {}
    namespace = None
    for parent in parents_of(t, inode):
        view = folder_view(t, parent)
        for uid, role in view.roles.items():
            roles[uid] = _stronger(roles.get(uid), role)
        namespace = namespace if namespace is not None else view.namespace
    for share in on_item(t, inode.ino):
        roles[share.uid] = _stronger(roles.get(share.uid), share.role)
    return roles, namespace


def grants(t: Txn, inode: Inode) -> dict[int, int]:
    """uid → permission bits the shares add to `inode`'s access ACL (empty: none)."""
    if inode.is_symlink or not in_use(t):
        return {}
    roles, namespace = roles_on(t, inode)
    perms = DIR_PERM if inode.is_dir else FILE_PERM
    out = {uid: perms[role] for uid, role in roles.items()}
    if namespace is None:
        return out
    if inode.is_dir:
        for uid in _through(t, namespace).get(inode.ino, ()):
            out[uid] = out.get(uid, 0) | SEARCH
    owner_uid = _owner_uid(t, namespace)
    if owner_uid is not None and owner_uid != inode.uid:
        out[owner_uid] = out.get(owner_uid, 0) | (7 if inode.is_dir else 6)
    return out


def _owner_uid(t: Txn, namespace: int) -> int | None:
    """The namespace's account's uid: its directory's owner (made so by `users add`; only
    root can change it)."""
    inode = t.inode_or_none(namespace)
    return inode.uid if inode is not None else None


def role_of(t: Txn, inode: Inode, uid: int) -> str | None:
    """The strongest role `uid` has on `inode` through shares on it or a folder above."""
    return roles_on(t, inode)[0].get(uid)


# --- what POSIX cannot say ------------------------------------------------------------------


def check_change(t: Txn, uid: int, inode: Inode, parent: int) -> None:
    """In another account's namespace, only what the caller made may be unlinked, renamed,
    chmod'ed, chown'ed or get ACLs (EPERM): an editor edits, it does not delete."""
    if uid == 0 or inode.uid == uid:
        return
    namespace = zones.namespace_of(t, parent)
    if namespace is None:
        return
    if _owner_uid(t, namespace) == uid:
        return
    if in_use(t) and role_of(t, inode, uid) in ("editor", "master"):  # a reader: POSIX says no first
        raise NotPermitted("a share lets you read or edit this, not delete, move or re-permission it")


# --- changes ------------------------------------------------------------------------------------


def may_share(t: Txn, uid: int, inode: Inode, namespace: int | None) -> bool:
    """Whether `uid` may change the shares of `inode` (lying in `namespace`) at all: root,
    the namespace's owner, or a master of it."""
    if uid == 0 or (namespace is not None and _owner_uid(t, namespace) == uid):
        return True
    return role_of(t, inode, uid) == "master"


def who_may_share(t: Txn, uid: int, inode: Inode, role: str) -> None:
    """Root may share anything (the namespace's owner too: the caller checks); a master
    up to its own role. Having made an item in another's namespace gives no right to share it."""
    if uid == 0:
        return
    mine = role_of(t, inode, uid)
    if mine != "master":
        raise AccessDenied("only the owner or a master of this item may change its shares")
    if RANK[role] > RANK[mine]:
        raise AccessDenied(f"a {mine} cannot give the role {role}")


def new_share(ino: int, grantee: str, uid: int, role: str, by: str, namespace: int) -> Share:
    check_role(role)
    return Share(ino, grantee, uid, role, by, time.time(), namespace)
