"""What repfs knows of one file or folder (`repfs-admin info PATH`): its attributes, its
ingest time, and the policy that applies to it (hold, retention, lock, shares)."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from repfs.errors import NotADirectory, NotFound, UnknownName
from repfs.fs import accounts as acc
from repfs.fs import holds, ingest, retention, shares, zones
from repfs.fs.locks import LockTable
from repfs.fs.paths import child_path
from repfs.fs.sharemanager import resolve_as
from repfs.meta.store import MetaStore

_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}  # fmt: skip
NS_PER_S = 1e9


@dataclass(frozen=True)
class FileInfo:
    path: str
    names: list[str]  # every name of the inode (hard links)
    ino: int
    kind: str
    size: int
    mode: str  # octal permission bits
    uid: int
    gid: int
    owner: str | None  # the account of uid
    namespace: str | None  # the account whose namespace it lies in
    ingested: float | None  # unix time repfs made it (not settable by programs)
    mtime: float
    ctime: float
    held: str | None  # the reason of the hold on it or above it ("" for none given); None: not held
    max_age: int  # seconds, from the retention rules that apply; 0: none
    min_age: int
    expires: float | None  # when the sweeper deletes it; None: never
    locked_by: str | None
    shared_with: dict[str, str]  # account → role, of shares on it (not above it)
    may_share: bool  # whether the asking account may change its shares


def info(meta: MetaStore, locks: LockTable, path: str, *, uid: int = 0) -> FileInfo:
    """What repfs knows of `path`, as `uid` may reach it (root: everything)."""
    try:
        ino = resolve_as(meta, path, uid)
    except (NotFound, NotADirectory) as exc:
        raise UnknownName(str(exc)) from None
    with meta.read() as t:
        inode = t.inode(ino)
        names = sorted(child_path(t, parent, name) for parent, name in t.links_of(ino)) or ["/"]
        owner = acc.by_uid(t, inode.uid)
        home = shares.namespace_of_item(t, ino)
        made = ingest.of(t, ino)
        held = None
        if holds.is_held(t, inode):
            hold = next((h for f in sorted(shares.above(t, inode)) if (h := holds.get(t, f)) is not None), None)
            held = hold.reason if hold is not None else ""
        rules = retention.applying(t, inode)
        expires = None
        if made is not None and rules.max_age and not inode.is_dir:
            expires = made.time_ns / NS_PER_S + rules.max_age
        given = {share.grantee: share.role for share in shares.on_item(t, ino)}
        lock = locks.holder(ino)
        return FileInfo(
            path=_as_named(path, names),
            names=names,
            ino=ino,
            kind=_KINDS.get(stat.S_IFMT(inode.mode), "other"),
            size=inode.size,
            mode=oct(stat.S_IMODE(inode.mode)),
            uid=inode.uid,
            gid=inode.gid,
            owner=owner.name if owner is not None else None,
            namespace=zones.owner(t, home) if home is not None else None,
            ingested=made.time_ns / NS_PER_S if made is not None else None,
            mtime=inode.mtime_ns / NS_PER_S,
            ctime=inode.ctime_ns / NS_PER_S,
            held=held,
            max_age=rules.max_age,
            min_age=rules.min_age,
            expires=expires,
            locked_by=lock.holder if lock is not None else None,
            shared_with=given,
            may_share=shares.may_share(t, uid, inode, home),
        )


def _as_named(path: str, names: list[str]) -> str:
    asked = "/" + "/".join(p for p in path.split("/") if p and p != ".")
    return asked if asked in names else names[0]
