"""`MemoryPool`: a dict-backed pool for unit tests, with faults to switch on and off.

    pool.down = True      every call (but close) raises PoolUnavailable
    pool.full = True      put raises PoolFull (so does a put past `capacity`)
    pool.corrupt(key)     flip a bit of a stored object behind the store's back

It passes the same conformance suite as the real pools. Never use it outside tests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import trio

from repfs.backend.base import PoolUsage, check_range, short_range
from repfs.backend.keys import check_key
from repfs.errors import ObjectNotFound, PoolFull, PoolUnavailable


class MemoryPool:
    def __init__(self, name: str, *, capacity: int = 1 << 30) -> None:
        self._name = name
        self.capacity = capacity
        self.objects: dict[str, bytes] = {}
        self.written: dict[str, float] = {}  # key → when it was last put (unix time)
        self.down = False
        self.full = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return f"memory://{self._name}"

    def __repr__(self) -> str:
        return f"MemoryPool({self._name!r})"

    def corrupt(self, key: str) -> None:
        """Flip one bit of the object under `key` (KeyError if there is none)."""
        data = bytearray(self.objects[key])
        if data:
            data[len(data) // 2] ^= 0x01
            self.objects[key] = bytes(data)
        else:
            self.objects[key] = b"\x01"

    async def _enter(self, key: str | None = None) -> None:
        if key is not None:
            check_key(key)
        await trio.lowlevel.checkpoint()
        if self.down:
            raise PoolUnavailable(f"pool {self._name} is down")

    async def put(self, key: str, data: bytes) -> None:
        await self._enter(key)
        if self.full:
            raise PoolFull(f"pool {self._name} is full: cannot store {key}")
        used = sum(map(len, self.objects.values())) - len(self.objects.get(key, b""))
        if used + len(data) > self.capacity:
            raise PoolFull(f"pool {self._name} is full: cannot store {key}")
        self.objects[key] = bytes(data)
        self.written[key] = time.time()

    async def get(self, key: str) -> bytes:
        await self._enter(key)
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(f"pool {self._name}: no object {key}") from None

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        await self._enter(key)
        try:
            data = self.objects[key][offset : offset + length]
        except KeyError:
            raise ObjectNotFound(f"pool {self._name}: no object {key}") from None
        if len(data) != length:
            raise short_range(self._name, key, offset, length, len(data))
        return data

    async def delete(self, key: str) -> None:
        await self._enter(key)
        self.objects.pop(key, None)

    async def exists(self, key: str) -> bool:
        await self._enter(key)
        return key in self.objects

    async def modified(self, key: str) -> float | None:
        await self._enter(key)
        return self.written.get(key) if key in self.objects else None

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        await self._enter()
        for key in [k for k in self.objects if k.startswith(prefix)]:
            yield key

    async def usage(self) -> PoolUsage:
        await self._enter()
        used = sum(map(len, self.objects.values()))
        return PoolUsage(used=used, total=self.capacity, free=max(self.capacity - used, 0))

    async def ping(self) -> None:
        await self._enter()

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()
