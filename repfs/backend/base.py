"""The `Pool` protocol: one object store, addressed by string keys.

Every pool implementation (local directory, S3, fault-injecting test wrappers)
implements this protocol, and one conformance suite (tests/unit/test_pool_conformance.py)
runs over each. Pools know nothing of inodes, blocks or encryption: they store opaque,
immutable objects under keys built by `repfs.backend.keys`.

Contract:
- `put` is atomic (a reader sees the whole object or none) and idempotent; when it
  returns, the object is durable on that pool.
- `get` raises `ObjectNotFound` for a missing key and `PoolUnavailable` when the pool
  cannot be reached; it never returns partial data.
- `get_range` returns exactly the bytes asked for (one block inside a pack object), or
  raises as `get` does, or `CorruptObject` when the object ends before the range does
  (a truncated copy: a fact about that copy, like a failed authentication).
- `delete` of a missing key is not an error.
- Every method is async and never blocks the trio loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from repfs.errors import CorruptObject


@dataclass(frozen=True)
class PoolUsage:
    """Space on a pool, in bytes. `total` is 0 when the pool cannot tell."""

    used: int
    total: int
    free: int
    # What holds the space: pools with the same non-empty `device` share it (local pools
    # on one disk), so a sum of space counts it once. Empty: the pool's own (S3).
    device: str = ""


def check_range(offset: int, length: int) -> None:
    """ValueError unless (offset, length) is a range a pool can be asked for."""
    if offset < 0 or length <= 0:
        raise ValueError(f"invalid range: {length} bytes at offset {offset}")


def short_range(pool: str, key: str, offset: int, length: int, got: int) -> CorruptObject:
    return CorruptObject(f"pool {pool}: object {key} ends before byte {offset + length} ({got} of {length} bytes read)")


@runtime_checkable
class Pool(Protocol):
    """One object store holding replicas of blocks and metadata objects."""

    @property
    def name(self) -> str:
        """Short unique name of the pool inside this filesystem (e.g. `pool1`)."""
        ...

    @property
    def url(self) -> str:
        """Where the pool lives, without credentials (e.g. `file:///srv/pool1`)."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically and durably."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the object stored under `key`."""
        ...

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return `length` (> 0) bytes of the object under `key`, from byte `offset` on."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    async def modified(self, key: str) -> float | None:
        """When the object under `key` was last written (unix time), None if there is none.

        Local mtime or S3 LastModified: it tells whether a renewed object (the mount
        lease) is live without reading it, whoever's key it was written under."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield every key that starts with `prefix`, in no particular order."""
        ...

    async def usage(self) -> PoolUsage:
        """Bytes used by this pool's objects and the space the pool has."""
        ...

    async def ping(self) -> None:
        """Raise `PoolUnavailable` unless the pool answers."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...
