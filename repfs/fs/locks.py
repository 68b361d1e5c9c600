"""Locks: while one account modifies a file, no other may (seed: "when a file is modified
it must be locked ... so that multiple users cannot modify the same file simultaneously").

A lock is a lease of one account (one uid) on one file, taken at its first open for
writing and held while it has the file open for writing; its last release ends it.
The same account may open the file as often as it likes; reads are never blocked.
Another account's open for writing, truncate by path, unlink, rename of the file or
rename over it fails with `FileLocked` (EBUSY; the web API will answer 423).

An administrator may break a lock (`repfs-admin locks break PATH`): the holder's handles
keep their other rights, but every write through them fails with `LockBroken` (EIO), so
there are never two writers. Locks of open files live in the daemon, as the opens do; a
restart ends them with the opens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from repfs.errors import FileLocked, LockBroken


@dataclass
class Lock:
    ino: int
    uid: int  # the holder: an account's uid (or a uid with no account)
    holder: str  # its account's name, or "uid N"
    since: float
    how: str = "open"  # "open": held by open file handles
    handles: set[int] = field(default_factory=set)


class LockTable:
    """Who holds which file. Policy lives here; the core asks before it changes a file."""

    def __init__(self) -> None:
        self._by_ino: dict[int, Lock] = {}
        self._broken: set[int] = set()  # handles whose lock was broken

    def take(self, ino: int, uid: int, holder: str, fh: int) -> None:
        """An open for writing: join the caller's lock, or take a free one."""
        lock = self._by_ino.get(ino)
        if lock is None:
            lock = self._by_ino[ino] = Lock(ino, uid, holder, time.time())
        elif lock.uid != uid:
            raise _busy(lock)
        lock.handles.add(fh)

    def check_free(self, ino: int, uid: int) -> None:
        """Before a change of the file by path (truncate, unlink, rename): refused while
        another uid holds it."""
        lock = self._by_ino.get(ino)
        if lock is not None and lock.uid != uid:
            raise _busy(lock)

    def check_write(self, fh: int) -> None:
        if fh in self._broken:
            raise LockBroken("the file's lock was broken by an administrator: this handle may not write")

    def release(self, ino: int, fh: int) -> None:
        self._broken.discard(fh)
        lock = self._by_ino.get(ino)
        if lock is None:
            return
        lock.handles.discard(fh)
        if not lock.handles:
            del self._by_ino[ino]

    def break_lock(self, ino: int) -> Lock | None:
        """End the lock on `ino`; the holder's handles may no longer write."""
        lock = self._by_ino.pop(ino, None)
        if lock is not None:
            self._broken |= lock.handles
        return lock

    def held(self) -> list[Lock]:
        return sorted(self._by_ino.values(), key=lambda lock: lock.since)

    def holder(self, ino: int) -> Lock | None:
        return self._by_ino.get(ino)


def _busy(lock: Lock) -> FileLocked:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lock.since))
    return FileLocked(f"{lock.holder} is modifying the file (locked since {since})")
