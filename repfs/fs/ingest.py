"""Ingest time: when each inode was made in this filesystem, kept by repfs.

`rsync -a`, `cp -p` and tar give a file its old mtime, and `touch` gives it a new one, so
neither retention nor eviction can go by mtime. repfs records the moment it made the
inode; nothing a program does changes it (utimensat sets mtime and atime only), and it is
journaled like all metadata. An ordered index of the namespace's files by ingest time
makes "the oldest files of a namespace" and "what is older than the cutoff" range reads.

| database | key | value |
|---|---|---|
| ingest | ino (u64) | ingest time (u64, ns since the epoch) ‖ namespace ino (u64; 0: none) |
| ingest_order | namespace ino ‖ ingest time ‖ ino (u64 each) | empty: files, links and others, not folders |
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from repfs.fs import zones
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

_VALUE = struct.Struct(">QQ")
_ORDER = struct.Struct(">QQQ")
BATCH = 10_000  # inodes per transaction when the index is built


@dataclass(frozen=True)
class Ingested:
    ino: int
    time_ns: int
    namespace: int | None


def record(t: Txn, inode: Inode, namespace: int | None, time_ns: int) -> None:
    """A new inode: its ingest time, and its place in its namespace's order (not folders:
    retention and eviction remove files)."""
    t.put("ingest", s.u64(inode.ino), _VALUE.pack(time_ns, namespace or 0))
    if not inode.is_dir:
        t.put("ingest_order", _ORDER.pack(namespace or 0, time_ns, inode.ino), b"")


def forget(t: Txn, ino: int) -> None:
    raw = t.get("ingest", s.u64(ino))
    if raw is None:
        return
    time_ns, namespace = _VALUE.unpack(raw)
    t.delete("ingest", s.u64(ino))
    t.delete("ingest_order", _ORDER.pack(namespace, time_ns, ino))


def of(t: Txn, ino: int) -> Ingested | None:
    raw = t.get("ingest", s.u64(ino))
    if raw is None or len(raw) != _VALUE.size:
        return None
    time_ns, namespace = _VALUE.unpack(raw)
    return Ingested(ino, int(time_ns), int(namespace) or None)


def oldest(
    t: Txn, namespace: int | None, *, after: tuple[int, int] = (0, 0), before_ns: int | None = None
) -> Iterator[Ingested]:
    """The namespace's files from the oldest ingest on, starting after (time, ino), and
    stopping at `before_ns` if given."""
    prefix = s.u64(namespace or 0)
    start = _ORDER.pack(namespace or 0, *after)
    for key, _ in t.scan("ingest_order", prefix, start=start):
        _, time_ns, ino = _ORDER.unpack(key)
        if (time_ns, ino) <= after:
            continue
        if before_ns is not None and time_ns >= before_ns:
            return
        yield Ingested(int(ino), int(time_ns), namespace)


def order_key(entry: Ingested) -> bytes:
    return _ORDER.pack(entry.namespace or 0, entry.time_ns, entry.ino)


def _namespace_for(t: Txn, inode: Inode, known: dict[int, int | None]) -> int | None:
    if inode.is_dir:
        folder = inode.ino
    else:
        link = next(t.links_of(inode.ino), None)
        if link is None:  # unlinked, still open: its namespace is kept with it
            raw = t.get("orphans", s.inode_key(inode.ino))
            return s.from_u64(raw) or None if raw is not None and len(raw) == 8 else None
        folder = link[0]
    if folder not in known:
        known[folder] = zones.namespace_of(t, folder)
    return known[folder]


def record_all(meta: MetaStore) -> int:
    """Give every inode without one an ingest record (the schema 4 migration): its ctime,
    the earliest moment repfs still knows of it, so nothing expires before its time."""
    recorded = 0
    start = b""
    known: dict[int, int | None] = {}
    while True:
        with meta.write_unjournaled() as t:
            batch = list(itertools.islice(t.scan("inodes", b"", start=start), BATCH))
            for key, value in batch:
                ino = s.from_u64(key)
                if ino == s.ROOT_INO or t.get("ingest", key) is not None:
                    continue
                inode = Inode.unpack(ino, value)
                record(t, inode, _namespace_for(t, inode, known), inode.ctime_ns)
                recorded += 1
        if len(batch) < BATCH:
            return recorded
        start = s.u64(s.from_u64(batch[-1][0]) + 1)


def check(t: Txn, inodes: dict[int, Inode], *, repair: bool = False) -> list[str]:
    """What is wrong with the ingest records and their order (fsck); with `repair`, made
    right: a missing record gets the inode's ctime, rows of no inode go."""
    problems: list[str] = []
    records = {s.from_u64(k): v for k, v in t.scan("ingest", b"")}
    order = {k for k, _ in t.scan("ingest_order", b"")}
    wanted: set[bytes] = set()
    known: dict[int, int | None] = {}
    for ino, inode in inodes.items():
        if ino == s.ROOT_INO:
            continue
        raw = records.get(ino)
        if raw is None or len(raw) != _VALUE.size:
            problems.append(f"inode {ino} has no ingest time")
            if repair:
                record(t, inode, _namespace_for(t, inode, known), inode.ctime_ns)
                raw = t.get("ingest", s.u64(ino))
            if raw is None:
                continue
        time_ns, namespace = _VALUE.unpack(raw)
        if not inode.is_dir:
            wanted.add(_ORDER.pack(namespace, time_ns, ino))
    for ino in sorted(set(records) - set(inodes)):
        problems.append(f"an ingest time of inode {ino}, which does not exist")
        if repair:
            t.delete("ingest", s.u64(ino))
    for key in sorted(order - wanted):
        problems.append(f"an ingest order row of inode {_ORDER.unpack(key)[2]} that its record does not back")
        if repair:
            t.delete("ingest_order", key)
    for key in sorted(wanted - order):
        problems.append(f"inode {_ORDER.unpack(key)[2]} is missing from the ingest order")
        if repair:
            t.put("ingest_order", key, b"")
    return problems
