"""Send the kernel the invalidations the daemon queued (`repfs.fs.kernelcache`), one at a
time in a worker thread: `pyfuse3.invalidate_entry` and `invalidate_inode` block until
the kernel is done, and may wait for a request in progress on the same names."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import trio

from repfs.fs.kernelcache import KernelCacheQueue

log = logging.getLogger(__name__)


def _send(kind: str, ino: int, name: bytes) -> None:
    try:
        if kind == "entry":
            pyfuse3.invalidate_entry(pyfuse3.InodeT(ino), name)
        else:
            pyfuse3.invalidate_inode(pyfuse3.InodeT(ino))
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOSYS):  # the kernel knew nothing of it
            log.warning("cannot invalidate the kernel's cache of %s %d %r: %s", kind, ino, name, exc)


async def forward(queue: KernelCacheQueue) -> None:
    """Service: drain the queue for the life of the FUSE session."""
    async for kind, ino, name in queue.receive:
        # abandoned at unmount if the kernel holds it: the session is closing anyway
        await trio.to_thread.run_sync(_send, kind, ino, name, abandon_on_cancel=True)
