"""The LMDB environment and typed transactions over the schema.

Invariants the rest of the code relies on:
- All LMDB access happens on the trio thread. A transaction never spans an `await`
  (a `with meta.write() as t:` block contains no `await`), so a write transaction
  never waits on a worker thread and readers never see half an operation.
- Each filesystem operation is one write transaction.
- The environment is opened with `sync=False`: a commit reaches the OS page cache at
  once (a killed daemon loses nothing) and `sync()` makes it durable on disk; fsync,
  unmount and the periodic flusher call it.
- The map grows by doubling before it can fill.
- Every write transaction that changes the filesystem gets the next sequence number
  (`META_JOURNAL_SEQ`, stored in the same transaction) and, once committed, its change
  set (db, key, value-or-None) goes to the `sink` (the metadata journal), in order.
  Entries of `schema.LOCAL_META` describe this host's copy and are not journaled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import lmdb

from repfs.errors import CorruptObject, NotFound
from repfs.meta import schema as s
from repfs.meta.records import BlockRecord, Inode

INITIAL_MAP_SIZE = 256 * 1024 * 1024
# Databases whose change empties the policy memo: what folders, namespaces and shares are.
POLICY_DBS = frozenset(
    {"parents", "namespaces", "shares", "shares_in", "shares_by_grantee", "accounts", "holds", "retention"}
)
POLICY_MEMO_MAX = 200_000
GROW_WHEN_USED = 0.5
GROW_CHECK_EVERY = 16

# One change of a write transaction: (database, key, new value or None for a delete).
Change = tuple[str, bytes, bytes | None]


class ChangeSink(Protocol):
    """Where committed change sets go, in order (the metadata journal)."""

    def append(self, seq: int, changes: list[Change]) -> None: ...


class Txn:
    """One LMDB transaction with typed accessors for every database."""

    def __init__(
        self,
        txn: lmdb.Transaction,
        dbs: dict[str, lmdb._Database],
        *,
        record: bool = False,
        memo: dict[object, object] | None = None,
    ) -> None:
        self.txn = txn
        self.db = dbs
        self.changes: list[Change] | None = [] if record else None
        # what policy computed from the tables it watches (repfs.fs.shares), read
        # transactions only: a write may change them under it
        self.memo = memo

    # --- raw helpers ---------------------------------------------------------------
    def get(self, db: str, key: bytes) -> bytes | None:
        v = self.txn.get(key, db=self.db[db])
        return None if v is None else bytes(v)

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.db[db])
        if self.changes is not None and not (db == "meta" and key in s.LOCAL_META):
            self.changes.append((db, key, value))

    def delete(self, db: str, key: bytes) -> bool:
        deleted = bool(self.txn.delete(key, db=self.db[db]))
        if deleted and self.changes is not None and not (db == "meta" and key in s.LOCAL_META):
            self.changes.append((db, key, None))
        return deleted

    def scan(self, db: str, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for keys with `prefix`, from `start` (inclusive) on."""
        cur = self.txn.cursor(db=self.db[db])
        if not cur.set_range(start if start is not None else prefix):
            return
        for k, v in cur:
            kb = bytes(k)
            if not kb.startswith(prefix):
                return
            yield kb, bytes(v)

    def counter(self, name: bytes) -> int:
        """Return the next value of a persistent counter."""
        raw = self.get("meta", name)
        value = s.from_u64(raw) if raw else 1
        self.put("meta", name, s.u64(value + 1))
        return value

    # --- inodes --------------------------------------------------------------------
    def inode(self, ino: int) -> Inode:
        raw = self.get("inodes", s.inode_key(ino))
        if raw is None:
            raise NotFound(f"inode {ino} does not exist")
        return Inode.unpack(ino, raw)

    def inode_or_none(self, ino: int) -> Inode | None:
        raw = self.get("inodes", s.inode_key(ino))
        return None if raw is None else Inode.unpack(ino, raw)

    def put_inode(self, inode: Inode) -> None:
        self.put("inodes", s.inode_key(inode.ino), inode.pack())

    def new_ino(self) -> int:
        return self.counter(s.META_NEXT_INO)

    # --- directory entries ---------------------------------------------------------
    def lookup(self, parent: int, name: bytes) -> int | None:
        raw = self.get("dirents", s.dirent_key(parent, name))
        return None if raw is None else s.parse_dirent_value(raw)[0]

    def add_entry(self, parent: int, name: bytes, child: int) -> None:
        cookie = self.counter(s.META_NEXT_COOKIE)
        self.put("dirents", s.dirent_key(parent, name), s.dirent_value(child, cookie))
        self.put("dircookie", s.cookie_key(parent, cookie), name)
        self.put("links", s.link_key(child, parent, name), b"")

    def remove_entry(self, parent: int, name: bytes) -> int:
        key = s.dirent_key(parent, name)
        raw = self.get("dirents", key)
        if raw is None:
            raise NotFound()
        child, cookie = s.parse_dirent_value(raw)
        self.delete("dirents", key)
        self.delete("dircookie", s.cookie_key(parent, cookie))
        self.delete("links", s.link_key(child, parent, name))
        return child

    def links_of(self, ino: int) -> Iterator[tuple[int, bytes]]:
        """(parent, name) of every name `ino` has."""
        for k, _ in self.scan("links", s.inode_key(ino)):
            _, parent, name = s.parse_link_key(k)
            yield parent, name

    def has_entries(self, parent: int) -> bool:
        for _ in self.scan("dirents", s.dirent_prefix(parent)):
            return True
        return False

    def entries_from(self, parent: int, cookie: int) -> Iterator[tuple[int, bytes, int]]:
        """Yield (cookie, name, child ino) in cookie order, from `cookie` on."""
        prefix = s.dirent_prefix(parent)
        for k, name in self.scan("dircookie", prefix, s.cookie_key(parent, cookie)):
            child = self.lookup(parent, name)
            if child is None:
                raise CorruptObject(f"directory {parent}: dangling readdir entry {name!r}")
            yield s.from_u64(k[8:]), name, child

    # --- blocks --------------------------------------------------------------------
    def block_of(self, ino: int, index: int) -> bytes | None:
        return self.get("blockmap", s.blockmap_key(ino, index))

    def blocks_from(self, ino: int, first_index: int) -> Iterator[tuple[int, bytes]]:
        """Yield (index, block id) of the inode's mapped blocks from `first_index` on."""
        for k, v in self.scan("blockmap", s.u64(ino), s.blockmap_key(ino, first_index)):
            yield s.parse_blockmap_key(k)[1], v

    def mapped_indexes(self, ino: int) -> Iterator[int]:
        """The indexes of the inode's mapped (non-hole) blocks, in order."""
        prefix = s.u64(ino)
        cur = self.txn.cursor(db=self.db["blockmap"])
        if not cur.set_range(prefix):
            return
        for k in cur.iternext(values=False):
            if k[:8] != prefix:
                return
            yield s.parse_blockmap_key(bytes(k))[1]

    def block_record(self, block_id: bytes) -> BlockRecord | None:
        raw = self.get("blocks", block_id)
        return None if raw is None else BlockRecord.unpack(raw)

    def put_block_record(self, block_id: bytes, rec: BlockRecord) -> None:
        self.put("blocks", block_id, rec.pack())

    def decref(self, block_id: bytes) -> None:
        """Drop one reference; a block nobody references goes to the gc list."""
        rec = self.block_record(block_id)
        if rec is None:
            raise CorruptObject(f"block {block_id.hex()[:12]} is referenced but has no record")
        rec.refcount -= 1
        self.put_block_record(block_id, rec)
        if rec.refcount <= 0:
            self.put("gc", block_id, b"")

    def unmap_block(self, ino: int, index: int) -> None:
        key = s.blockmap_key(ino, index)
        old = self.get("blockmap", key)
        if old is not None:
            self.delete("blockmap", key)
            self.decref(old)

    def map_block(self, ino: int, index: int, block_id: bytes) -> None:
        """Point (ino, index) at `block_id`; the caller already counted the new reference."""
        key = s.blockmap_key(ino, index)
        old = self.get("blockmap", key)
        self.put("blockmap", key, block_id)
        if old is not None:
            self.decref(old)


class MetaStore:
    """The LMDB environment of one filesystem."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.readonly = readonly
        self.env = lmdb.open(
            str(path),
            map_size=INITIAL_MAP_SIZE,
            max_dbs=len(s.DATABASES) + 2,
            sync=False,
            metasync=False,
            readonly=readonly,
            lock=True,
            max_readers=512,
        )
        self._page = self.env.stat()["psize"]
        self._writes = 0
        self._tight = True
        self._grow_if_needed()
        self.dbs = {name: self.env.open_db(name.encode()) for name in s.DATABASES}
        self._sink: ChangeSink | None = None
        self.policy_memo: dict[object, object] = {}
        with self.env.begin() as txn:
            raw = txn.get(s.META_JOURNAL_SEQ, db=self.dbs["meta"])
        self.seq = s.from_u64(raw) if raw else 0

    def journal_to(self, sink: ChangeSink) -> None:
        """Send every change set committed from now on to `sink`."""
        self._sink = sink

    def _grow_if_needed(self) -> None:
        # Looked at before every write once a quarter of the map is used, else every
        # GROW_CHECK_EVERY writes: a few transactions are far from filling three quarters.
        self._writes += 1
        if self._writes % GROW_CHECK_EVERY != 1 and not self._tight:
            return
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self._page
        size = info["map_size"]
        if used > size * GROW_WHEN_USED:
            self.env.set_mapsize(size := max(size * 2, used * 4))
        self._tight = used > size * GROW_WHEN_USED / 2

    @contextmanager
    def write(self) -> Iterator[Txn]:
        """One write transaction; commits on success, aborts on any exception."""
        self._grow_if_needed()
        txn = self.env.begin(write=True)
        try:
            t = Txn(txn, self.dbs, record=True)
            yield t
            changes = t.changes or []
            if changes:
                seq = self.seq + 1
                txn.put(s.META_JOURNAL_SEQ, s.u64(seq), db=self.dbs["meta"])
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        if changes:
            self.seq = seq
            if any(db in POLICY_DBS for db, _, _ in changes):
                self.policy_memo.clear()
            if self._sink is not None:
                self._sink.append(seq, changes)

    @contextmanager
    def write_unjournaled(self) -> Iterator[Txn]:
        """A write transaction that is not a change set: no sequence number, nothing to the
        journal. Only for data the metadata itself can give again (a schema migration's
        derived tables): the next snapshot carries it to the pools."""
        self._grow_if_needed()
        txn = self.env.begin(write=True)
        try:
            yield Txn(txn, self.dbs)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        finally:
            self.policy_memo.clear()

    @contextmanager
    def read(self) -> Iterator[Txn]:
        if len(self.policy_memo) > POLICY_MEMO_MAX:
            self.policy_memo.clear()
        with self.env.begin(write=False) as txn:
            t = Txn(txn, self.dbs, memo=self.policy_memo)
            try:
                yield t
            finally:
                # A caller's name for `t` lives on after its block (across the awaits of a
                # fetch, say); an ended LMDB read transaction keeps its reader slot for as
                # long as it is referenced, and dozens of fetches filled the table.
                del t.txn

    def sync(self) -> None:
        """Make every committed transaction durable on the local disk."""
        self.env.sync(True)

    def close(self) -> None:
        if not self.readonly:
            self.env.sync(True)
        self.env.close()

    def disk_bytes(self) -> int:
        return os.path.getsize(self.path / "data.mdb")
