"""Legal holds: a file or folder on hold (and everything in it) cannot be deleted,
renamed, truncated, written or expired by anyone, root included (EPERM), until an
administrator lifts the hold (seed 002: "legal hold capabilities"). A held folder is
frozen: no new names in it either (that would be writing it). Reading goes on.

Whether an inode is held is decided like its shares: the hold table is the truth, and
each folder's answer (it, or a folder above it, is held) is memoized per folder in the
metadata store's policy memo, which every commit that changes the table empties.

| database | key | value |
|---|---|---|
| holds | item ino (u64) | `Hold` (versioned JSON) |
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from repfs.errors import NotPermitted
from repfs.fs import folders, shares
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

RECORD_VERSION = 1


@dataclass(frozen=True)
class Hold:
    reason: str
    by: str  # the administrator's account name, or "root"
    since: float

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> Hold:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version != RECORD_VERSION:
            raise ValueError(f"hold record version {version} is not known")
        return cls(**data)


def any_holds(t: Txn) -> bool:
    return next(t.scan("holds", b""), None) is not None


def get(t: Txn, ino: int) -> Hold | None:
    raw = t.get("holds", s.u64(ino))
    return Hold.unpack(raw) if raw is not None else None


def put(t: Txn, ino: int, reason: str, by: str) -> Hold:
    hold = Hold(reason, by, time.time())
    t.put("holds", s.u64(ino), hold.pack())
    return hold


def delete(t: Txn, ino: int) -> bool:
    return t.delete("holds", s.u64(ino))


def every(t: Txn) -> list[tuple[int, Hold]]:
    return [(s.from_u64(k), Hold.unpack(v)) for k, v in t.scan("holds", b"")]


def _folder_held(t: Txn, folder: int) -> bool:
    def step(f: int, above: bool) -> bool:
        return above or t.get("holds", s.u64(f)) is not None

    return folders.inherited(t, folder, "held", False, step)


def is_held(t: Txn, inode: Inode) -> bool:
    """Whether `inode`, or a folder it lies in, is on hold (one read when there are none)."""
    if not any_holds(t):
        return False
    if inode.is_dir:
        return _folder_held(t, inode.ino)
    if t.get("holds", s.u64(inode.ino)) is not None:
        return True
    return any(_folder_held(t, parent) for parent in shares.parents_of(t, inode))


def check_not_held(t: Txn, inode: Inode, what: str) -> None:
    """EPERM for a change a hold forbids, whoever asks (root included)."""
    if is_held(t, inode):
        raise NotPermitted(f"on legal hold: it cannot be {what} until an administrator lifts the hold")


def held_below(t: Txn, folder: int) -> list[int]:
    """The holds on `folder` or anything in it (for `users remove --delete-files`)."""
    out = []
    for ino, _ in every(t):
        inode = t.inode_or_none(ino)
        if inode is not None and folder in shares.above(t, inode):
            out.append(ino)
    return out
