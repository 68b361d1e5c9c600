"""File I/O on the mount as a signed-in account, so that the kernel's permission checks,
shares, locks, quotas, holds and the audit log apply to it exactly as to any program.

The web process runs as root. A call made for an account runs in a worker thread that
takes the account's filesystem uid, gid and supplementary groups for the length of the
call and gives them back after. Linux keeps these per thread; glibc's setgroups() would
change every thread of the process, so the raw system call is used for the groups.
While the fsuid is not 0 the thread has none of root's file capabilities (the kernel
drops CAP_DAC_OVERRIDE and the others), so it can do what the account can, nothing more.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

T = TypeVar("T")

_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}
_libc = ctypes.CDLL(None, use_errno=True)
_ROOT_GROUPS = os.getgroups()


@dataclass(frozen=True)
class Who:
    """The credentials an account's calls run with."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


ROOT = Who("root", 0, 0, ())  # an administrator's walk, the clean-up of uploads whose account may be gone


def _setgroups(groups: tuple[int, ...] | list[int]) -> None:
    number = _SYS_SETGROUPS.get(platform.machine())
    if number is None:
        raise OSError(f"repfs web does not know setgroups on {platform.machine()}")
    array = (ctypes.c_uint32 * max(1, len(groups)))(*groups)
    if _libc.syscall(number, len(groups), array) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setgroups: {os.strerror(err)}")


def _become(uid: int, gid: int, groups: tuple[int, ...] | list[int]) -> None:
    _setgroups(groups)
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _libc.setfsuid(-1) != uid or _libc.setfsgid(-1) != gid:  # -1: ask, change nothing
        raise OSError(f"could not take uid {uid}, gid {gid} for file access")


def run_as(who: Who, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` with `who`'s file credentials, in this (worker) thread."""
    _become(who.uid, who.gid, who.groups)
    try:
        return fn(*args)
    finally:
        _become(0, 0, _ROOT_GROUPS)


class Workers:
    """Bounded worker threads for file calls: at most `size` at once, whoever asks."""

    def __init__(self, size: int = 32) -> None:
        self.limiter = trio.CapacityLimiter(size)

    async def call(self, who: Who, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(run_as, who, fn, *args, limiter=self.limiter)

    async def close(self, fd: int) -> None:
        """Close a file of the mount off the event loop (the kernel waits for the daemon's
        FLUSH), also when the request is cancelled: a slow mount holds up no other request."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(os.close, fd, limiter=self.limiter)


def groups_of(name: str, gid: int) -> tuple[int, ...]:
    """The host user's supplementary groups (accounts are people of this host)."""
    try:
        return tuple(os.getgrouplist(name, gid))
    except (KeyError, OSError):
        return (gid,)
