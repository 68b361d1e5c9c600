"""The content hasher: reads files whose hash is not known (`fs.contenthash`: changed other
than in order from offset 0, or there before content hashes) in the background, at a
byte rate that leaves room for users, and records their hash unless they changed."""

from __future__ import annotations

import hashlib
import logging

import trio

from repfs.fs.contenthash import ContentHashes, pending, record
from repfs.fs.core import Filesystem
from repfs.fs.ratelimit import RateLimit
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

PENDING_BATCH = 64  # files taken at a time
IDLE = 60.0  # seconds between looks for pending files when none was announced


class Hasher:
    """Reads pending files at `rate` bytes a second (None: no limit)."""

    def __init__(self, meta: MetaStore, fs: Filesystem, hashes: ContentHashes, *, rate: float | None) -> None:
        self.meta = meta
        self.fs = fs
        self.hashes = hashes
        self.pace = RateLimit(rate)
        self.hashed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            # a new event before looking: a file closed while this round reads others wakes the next wait
            self.hashes.pending_added = trio.Event()
            with self.meta.read() as t:
                todo = pending(t, PENDING_BATCH)
            done, failed, first = 0, 0, ""
            for ino in todo:
                try:
                    done += await self._hash(ino)
                except Exception as exc:  # noqa: BLE001 - a pool down or a bad block: the file waits
                    failed, first = failed + 1, first or f"inode {ino}: {exc}"
            if failed:  # one line a round, however many failed
                log.warning("content hashes of %d files left for later (%s)", failed, first)
            if done == 0:  # nothing pending, or all of it busy or failing: wait for news
                with trio.move_on_after(IDLE):  # a period, not synchronisation
                    await self.hashes.pending_added.wait()

    async def _hash(self, ino: int) -> int:
        with self.meta.read() as t:
            inode = t.inode_or_none(ino)
        if inode is None or not inode.is_reg:
            with self.meta.write() as t:
                t.delete("hash_pending", s.inode_key(ino))
            return 1
        if self.hashes.busy(ino) or self.fs.locks.holder(ino) is not None:
            return 0  # being written: its writer's close decides
        sha = hashlib.sha256()
        bs = self.fs.bs
        for index in range(-(-inode.size // bs)):
            n = min(bs, inode.size - index * bs)
            await self.pace.take(n)
            sha.update(await self.fs.cache.read(ino, index, 0, n))
        with self.meta.write() as t:
            now = t.inode_or_none(ino)
            unchanged = now is not None and (now.size, now.mtime_ns) == (inode.size, inode.mtime_ns)
            if unchanged and not self.hashes.busy(ino) and t.get("hash_pending", s.inode_key(ino)) is not None:
                record(t, ino, self.hashes.mac(sha.digest()))
                self.hashed += 1
                return 1
        return 0
