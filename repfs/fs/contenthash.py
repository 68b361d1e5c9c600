"""Files by their content (seed 003: "check and get a file by its hash").

repfs knows the SHA-256 of a file's content, but keeps only an HMAC of it (a key derived
from the data key, `codec.keys.LABEL_CONTENT_HASH`): someone who reads the metadata
cannot test whether a file of a known content is stored. The hash is kept while a file is
written in order from offset 0 (a new file, or one truncated to nothing: what cp, rsync,
tar and uploads do) and recorded when its last writer closes it; any other change marks
the file pending, and the hasher (`fs.hasher`) reads pending files in the background, at a low rate.

| database | key | value |
|---|---|---|
| content_hash | HMAC-SHA256(key, sha256) (32 bytes) ‖ ino (u64) | empty |
| file_hash | ino (u64) | the HMAC (32 bytes) |
| hash_pending | ino (u64) | empty: a regular file whose hash is not known now |

A file is in exactly one of file_hash and hash_pending from the moment it is made until
it is purged; these rows are metadata like the rest (journaled, recovered).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import trio

from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)

MAC_SIZE = 32
BATCH = 10_000  # rows per transaction of the schema 5 migration
KEPT = 4096  # running hashes kept (a file closed in order and appended to later: tus chunks)


def _sha256() -> Any:
    return hashlib.sha256()


@dataclass
class _Running:
    """The hash of a file written in order from 0, as far as it is written."""

    sha: Any = field(default_factory=_sha256)
    end: int = 0


class ContentHashes:
    """The index and the hashes being kept while files are written (the core calls it
    in the transactions of content changes)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._running: OrderedDict[int, _Running] = OrderedDict()  # least recently written first
        self._changing: set[int] = set()  # marked pending by this mount since their last record
        self.pending_added = trio.Event()  # set when a file became pending: the hasher looks

    def mac(self, digest: bytes) -> bytes:
        return hmac.new(self._key, digest, hashlib.sha256).digest()

    # --- the core's calls -----------------------------------------------------------
    def changing(self, t: Txn, ino: int) -> None:
        """The content of `ino` changes in this transaction: its hash is no longer known."""
        if ino in self._changing:
            return
        _forget_record(t, ino)
        t.put("hash_pending", s.inode_key(ino), b"")
        self._changing.add(ino)

    def begin(self, ino: int) -> None:
        """`ino` is empty now (made, or truncated to 0): keep its hash as it is written."""
        self._running[ino] = _Running()
        self._running.move_to_end(ino)
        while len(self._running) > KEPT:  # the oldest is hashed by the hasher if it changes again
            self._running.popitem(last=False)

    def wrote(self, ino: int, offset: int, data: bytes | memoryview) -> None:
        running = self._running.get(ino)
        if running is None:
            return
        if offset != running.end:
            del self._running[ino]  # not in order: the hasher reads it later
            return
        running.sha.update(data)
        running.end += len(data)
        self._running.move_to_end(ino)

    def resized(self, ino: int, size: int) -> None:
        """`ino` is `size` bytes now (-1: unknown, after a failed write). Space reserved past
        the hashed end (an upload's ftruncate to its length) keeps the hash going: it is
        recorded only if writes in order filled the file to its end."""
        if size == 0:
            self.begin(ino)
        else:
            running = self._running.get(ino)
            if running is not None and size < running.end:
                del self._running[ino]

    def closed(self, t: Txn, inode: Inode) -> None:
        """The last writer of `inode` closed it: record its hash if it was kept throughout.
        The running hash stays, so a later append (the next chunk of an upload) goes on from it."""
        running = self._running.get(inode.ino)
        changed = inode.ino in self._changing
        self._changing.discard(inode.ino)
        if running is not None and running.end == inode.size and changed:
            record(t, inode.ino, self.mac(running.sha.digest()))
        elif changed:
            self.pending_added.set()

    def purged(self, t: Txn, ino: int) -> None:
        _forget_record(t, ino)
        t.delete("hash_pending", s.inode_key(ino))
        self._running.pop(ino, None)
        self._changing.discard(ino)

    def busy(self, ino: int) -> bool:
        """Whether this mount is changing `ino` now (the hasher leaves it)."""
        return ino in self._changing

    # --- queries ----------------------------------------------------------------------
    def files_with(self, t: Txn, sha256: bytes) -> list[int]:
        mac = self.mac(sha256)
        return [s.from_u64(k[MAC_SIZE:]) for k, _ in t.scan("content_hash", mac)]


def record(t: Txn, ino: int, mac: bytes) -> None:
    _forget_record(t, ino)
    t.put("file_hash", s.inode_key(ino), mac)
    t.put("content_hash", mac + s.inode_key(ino), b"")
    t.delete("hash_pending", s.inode_key(ino))


def _forget_record(t: Txn, ino: int) -> None:
    old = t.get("file_hash", s.inode_key(ino))
    if old is not None:
        t.delete("content_hash", old + s.inode_key(ino))
        t.delete("file_hash", s.inode_key(ino))


def pending(t: Txn, limit: int) -> list[int]:
    return [s.from_u64(k) for k, _ in itertools.islice(t.scan("hash_pending", b""), limit)]


def pending_count(t: Txn, cap: int = 100_000) -> int:
    """How many files wait for their hash (counted up to `cap`)."""
    return sum(1 for _ in itertools.islice(t.scan("hash_pending", b""), cap))


def pend_all(meta: MetaStore) -> int:
    """Mark every regular file pending (the schema 5 migration): the hasher reads them."""
    marked = 0
    start = b""
    while True:
        with meta.write_unjournaled() as t:
            batch = list(itertools.islice(t.scan("inodes", b"", start=start), BATCH))
            for key, value in batch:
                if Inode.unpack(s.from_u64(key), value).is_reg and t.get("file_hash", key) is None:
                    t.put("hash_pending", key, b"")
                    marked += 1
        if len(batch) < BATCH:
            return marked
        start = s.u64(s.from_u64(batch[-1][0]) + 1)
