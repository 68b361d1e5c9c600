"""Quotas: what each namespace holds, counted live, and the limits of its account.

The unit is defined: **bytes** is the sum of `st_size` of the namespace's regular files
and symbolic links, each inode once; **files** is the number of its inodes (files,
folders, links, others), its own folder excluded. An inode counts to the namespace it
lives in (an editor's new file in a shared folder counts to the folder's owner), and
never changes namespace: renames and links between namespaces are EXDEV. A file unlinked
while open counts until it is freed.

The counters change in the same write transaction as what they count, never by a scan,
so they are exact across kill -9 and `repfs recover` (they are metadata like the rest).
A change that would pass a hard limit raises `QuotaExceeded` (EDQUOT) and, the
transaction aborting, changes nothing.

| database | key | value |
|---|---|---|
| usage | namespace ino (u64) | bytes (u64) ‖ files (u64) |
| quotas | account name | `Limits` (versioned JSON) |
"""

from __future__ import annotations

import json
import stat
import struct
from dataclasses import asdict, dataclass

from repfs.errors import QuotaExceeded
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

RECORD_VERSION = 2  # 2 added `evict_bytes`; version 1 records read with it 0
_USAGE = struct.Struct(">QQ")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 0  # hard limit on bytes; 0: none
    max_files: int = 0  # hard limit on files; 0: none
    soft_bytes: int = 0  # a warning past it; 0: none
    evict_bytes: int = 0  # past it the oldest files are removed (`repfs.fs.expiry`); 0: never

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> Limits:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version not in (1, RECORD_VERSION):
            raise ValueError(f"quota record version {version} is not known")
        return cls(**data)


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


def counted_bytes(inode: Inode) -> int:
    """What an inode adds to `bytes`: the size of a regular file or symbolic link."""
    return inode.size if stat.S_ISREG(inode.mode) or stat.S_ISLNK(inode.mode) else 0


def usage(t: Txn, namespace: int) -> Usage:
    raw = t.get("usage", s.u64(namespace))
    if raw is None:
        return Usage(0, 0)
    nbytes, files = _USAGE.unpack(raw)
    return Usage(int(nbytes), int(files))


def limits(t: Txn, namespace: int) -> Limits:
    name = t.get("namespaces", s.u64(namespace))
    raw = t.get("quotas", name) if name is not None else None
    return Limits.unpack(raw) if raw is not None else NO_LIMITS


def limits_of(t: Txn, account: str) -> Limits:
    raw = t.get("quotas", account.encode())
    return Limits.unpack(raw) if raw is not None else NO_LIMITS


def set_limits(t: Txn, account: str, new: Limits) -> None:
    if new == NO_LIMITS:
        t.delete("quotas", account.encode())
    else:
        t.put("quotas", account.encode(), new.pack())


@dataclass(frozen=True)
class Charged:
    soft: bool = False  # the change took the namespace past its soft limit
    evict: bool = False  # the namespace is past its eviction size


NOTHING = Charged()


def charge(t: Txn, namespace: int | None, *, nbytes: int = 0, files: int = 0) -> Charged:
    """Count a change to `namespace` (None: outside every namespace, not counted).
    QuotaExceeded when it grows past a hard limit."""
    if namespace is None or (nbytes == 0 and files == 0):
        return NOTHING
    now = usage(t, namespace)
    new = Usage(max(0, now.bytes + nbytes), max(0, now.files + files))
    lim = limits(t, namespace) if nbytes > 0 or files > 0 else NO_LIMITS
    if nbytes > 0 and lim.max_bytes and new.bytes > lim.max_bytes:
        raise QuotaExceeded(f"the namespace would hold {new.bytes} bytes; its quota is {lim.max_bytes}")
    if files > 0 and lim.max_files and new.files > lim.max_files:
        raise QuotaExceeded(f"the namespace would hold {new.files} files; its quota is {lim.max_files}")
    t.put("usage", s.u64(namespace), _USAGE.pack(new.bytes, new.files))
    if lim is NO_LIMITS:
        return NOTHING
    return Charged(
        soft=bool(nbytes > 0 and lim.soft_bytes and now.bytes <= lim.soft_bytes < new.bytes),
        evict=bool(nbytes > 0 and lim.evict_bytes and new.bytes > lim.evict_bytes),
    )


def forget(t: Txn, namespace: int) -> None:
    t.delete("usage", s.u64(namespace))


def recount(t: Txn, namespace: int) -> Usage:
    """The namespace's usage from its tree (a scan: for migration and fsck, never the
    operations), each inode once; unlinked-but-open inodes are not reached."""
    seen: set[int] = set()
    nbytes = 0
    todo = [namespace]
    while todo:
        folder = todo.pop()
        for _, _, child in t.entries_from(folder, 0):
            if child in seen:
                continue
            seen.add(child)
            inode = t.inode(child)
            nbytes += counted_bytes(inode)
            if inode.is_dir:
                todo.append(child)
    return Usage(nbytes, len(seen))


def store(t: Txn, namespace: int, value: Usage) -> None:
    t.put("usage", s.u64(namespace), _USAGE.pack(value.bytes, value.files))


def count_all(meta: MetaStore) -> int:
    """Every namespace's counter from its tree (the schema 3 migration); how many."""
    with meta.read() as t:
        namespaces = [s.from_u64(k) for k, _ in t.scan("namespaces", b"")]
    for ino in namespaces:
        with meta.write_unjournaled() as t:
            store(t, ino, recount(t, ino))
    return len(namespaces)
