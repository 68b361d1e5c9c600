"""Locks as an administrator sees them: who holds which file since when, and breaking
one (`repfs-admin locks list|break`). The rules are in repfs.fs.locks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from repfs.errors import NotADirectory, NotFound, RequestRefused, UnknownName
from repfs.fs.audit import Audit
from repfs.fs.locks import Lock, LockTable
from repfs.fs.paths import path_of, resolve
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockInfo:
    path: str
    holder: str  # account name, or "uid N"
    uid: int
    since: float
    how: str  # "open": the holder has the file open for writing
    handles: int  # open handles that hold it


def _info(meta: MetaStore, lock: Lock) -> LockInfo:
    with meta.read() as t:
        path = path_of(t, lock.ino)
    return LockInfo(path, lock.holder, lock.uid, lock.since, lock.how, len(lock.handles))


def list_locks(meta: MetaStore, locks: LockTable) -> list[LockInfo]:
    return [_info(meta, lock) for lock in locks.held()]


def break_lock(meta: MetaStore, locks: LockTable, audit: Audit, path: str, *, by_uid: int) -> LockInfo:
    """End the lock on the file at `path` (relative to the mount's root): its holder's
    later writes through the handles it has fail with EIO."""
    try:
        ino = resolve(meta, path)
    except (NotFound, NotADirectory) as exc:
        raise UnknownName(str(exc)) from None
    lock = locks.holder(ino)
    if lock is None:
        raise RequestRefused(f"{path} is not locked")
    info = _info(meta, lock)
    locks.break_lock(ino)
    audit.write(by_uid, "locks.break", info.path, holder=info.holder)
    log.warning("lock of %s on %s broken by an administrator", info.holder, info.path)
    return info
