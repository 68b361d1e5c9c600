"""The lock of a filesystem directory: one daemon (mount, scrub, fsck, recover) at a
time, and the outcome it leaves there for `repfs umount` to read."""

from __future__ import annotations

import fcntl
import os

from repfs import mountinfo
from repfs.errors import SetupError
from repfs.volume import FsPaths


def lock_fs_dir(paths: FsPaths) -> int:
    """Hold the filesystem directory's lock for the daemon's life (one mount at a time)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = paths.lock.read_text().split("\n", 1)[0].strip() or "?"
        where = ", ".join(mountinfo.mountpoints_of(paths.root)) or "no mount point (a scrub or fsck?)"
        raise SetupError(
            f"{paths.root} is already mounted by another repfs process (pid {pid}, on {where}); "
            "unmount it first with: repfs umount MOUNTPOINT"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def report(lock_fd: int, status: str, note: str = "") -> None:
    """Leave the outcome in the lock file, where `repfs umount` reads it once the lock is free."""
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n{status}\n{note}\n".encode(), 0)


def read_report(paths: FsPaths) -> tuple[str | None, str]:
    """The status the last daemon left (`clean` or what went wrong; None when it left
    none) and its note (blocks left short of copies), "" if none."""
    try:
        lines = paths.lock.read_text().splitlines()
    except OSError:
        return None, ""
    return (lines[1] if len(lines) > 1 else None), (lines[2] if len(lines) > 2 else "")
