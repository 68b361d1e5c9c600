"""What the kernel may have cached and must forget: changes made inside the daemon rather
than through a kernel request (a namespace made or removed; later shares, holds, sweeper
deletes and web uploads). The kernel caches names (negative ones too) and attributes for
a second; without this, a new namespace could look missing and a removed one present.

The queue is bounded: when it is full an invalidation is dropped and counted, and the
kernel's cache still expires by its timeout. The FUSE session drains it
(`repfs.fuse.kernelcache.Forwarder`), outside every request handler: sending from inside
one would deadlock the session.
"""

from __future__ import annotations

import logging
from typing import Literal

import trio

log = logging.getLogger(__name__)

QUEUE_SIZE = 4096
Invalidation = tuple[Literal["entry", "inode"], int, bytes]


class KernelCacheQueue:
    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self._send, self.receive = trio.open_memory_channel[Invalidation](size)
        self.dropped = 0

    def forget_entry(self, parent: int, name: bytes) -> None:
        """The kernel must look `name` up in `parent` again (made, removed or renamed here)."""
        self._put(("entry", parent, name))

    def forget_inode(self, ino: int) -> None:
        """The kernel must ask for `ino`'s attributes and data again."""
        self._put(("inode", ino, b""))

    async def forget_inode_surely(self, ino: int) -> None:
        """`forget_inode`, waiting for room rather than dropping it: for a revoke, whose
        effect the kernel would otherwise keep (it caches ACLs until told)."""
        await self._send.send(("inode", ino, b""))

    def _put(self, item: Invalidation) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("kernel cache invalidations are behind: %d dropped (names and attributes expire in "
                            "a second, ACLs when the kernel evicts the inode)", self.dropped)  # fmt: skip
