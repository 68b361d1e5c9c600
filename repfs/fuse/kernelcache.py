"""Send the kernel the invalidations the daemon queued (`repfs.fs.kernelcache`), one at a
time in a worker thread: `pyfuse3.invalidate_entry` and `invalidate_inode` block until
the kernel is done, and may wait for a request in progress on the same names."""

from __future__ import annotations

import errno
import logging
import threading

import pyfuse3
import trio

from repfs.fs.kernelcache import KernelCacheQueue

log = logging.getLogger(__name__)


CLOSE_WAIT = 5.0  # seconds `close` waits for an invalidation the kernel holds


class Forwarder:
    """Service for the life of the FUSE session: drain the queue. `close()` before the
    session is closed: no invalidation may reach a session that is gone."""

    def __init__(self, queue: KernelCacheQueue) -> None:
        self.queue = queue
        self._sending = threading.Lock()
        self._closed = False

    def _send(self, kind: str, ino: int, name: bytes) -> None:
        with self._sending:
            if self._closed:
                return
            try:
                if kind == "entry":
                    pyfuse3.invalidate_entry(pyfuse3.InodeT(ino), name)
                else:
                    pyfuse3.invalidate_inode(pyfuse3.InodeT(ino))
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOSYS):  # the kernel knew nothing of it
                    log.warning("cannot invalidate the kernel's cache of %s %d %r: %s", kind, ino, name, exc)

    async def run(self) -> None:
        async for kind, ino, name in self.queue.receive:
            # abandoned at unmount if the kernel holds it: `close` waits for it a while
            await trio.to_thread.run_sync(self._send, kind, ino, name, abandon_on_cancel=True)

    def close(self) -> None:
        """No more invalidations; waits up to CLOSE_WAIT for one in progress."""
        if self._sending.acquire(timeout=CLOSE_WAIT):
            self._closed = True
            self._sending.release()
        else:
            self._closed = True
            log.warning("an invalidation of the kernel's cache did not finish before unmount")
