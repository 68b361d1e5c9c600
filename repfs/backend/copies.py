"""`BlockCopies`: one pool's copy of a block at a time, for health challenges, repair,
scrub and checks (the block data path, with its quorum and stand-ins, is replicated.py).
"""

from __future__ import annotations

from collections.abc import Awaitable

import trio

from repfs.backend.base import Pool
from repfs.backend.keys import block_key
from repfs.backend.poolset import PoolSet, reason
from repfs.backend.state import object_digest
from repfs.errors import CorruptObject, ObjectNotFound, PoolFull, StorageError

Place = tuple[str, int, int]  # a packed block's frame: (pack key, offset, length)


class BlockCopies:
    def __init__(self, pools: PoolSet, *, cpu_limiter: trio.CapacityLimiter | None = None) -> None:
        self._pools = pools
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)

    async def read_copy(
        self, name: str, block_id: bytes, digest: bytes, place: Place | None = None
    ) -> tuple[bytes | None, str]:
        """One pool's copy of a block, checked against `digest`: (object, "") when good,
        (None, why) when missing, damaged or unreadable. Works in any pool state, so that
        a pool being verified can be challenged. A packed block (its record's `place`) is
        read by its range from the pack."""
        self._pools.check_name(name)
        key = block_key(block_id) if place is None else place[0]

        def read(pool: Pool) -> Awaitable[bytes]:
            return pool.get(key) if place is None else pool.get_range(key, place[1], place[2])

        try:
            obj = await self._pools.call(name, f"get {key}", read, attempts=1)
        except ObjectNotFound:
            return None, "missing"
        except CorruptObject:
            return None, "corrupt: cut short"
        except StorageError as exc:
            return None, reason(exc)
        got = await trio.to_thread.run_sync(object_digest, obj, limiter=self._cpu_limiter)
        if got != digest:
            return None, "corrupt: digest mismatch"
        return obj, ""

    async def has_copy(self, name: str, block_id: bytes, place: Place | None = None) -> bool:
        """Whether pool `name` holds an object for the block, or the pack it lies in (a soft
        check: not its content)."""
        self._pools.check_name(name)
        key = block_key(block_id) if place is None else place[0]
        return await self._pools.call(name, f"check {key}", lambda pool: pool.exists(key), nbytes=0)

    async def put_copy(self, name: str, block_id: bytes, obj: bytes) -> None:
        """Store one copy of a block on `name` (repair and rebalance); raises StorageError."""
        key = block_key(block_id)
        try:
            await self._pools.call(name, f"put {key}", lambda pool: pool.put(key, obj), nbytes=len(obj))
        except PoolFull as exc:
            self._pools.space_book.mark_full(name, exc)
            raise
        self._pools.space_book.count(name, len(obj))

    async def delete_copy(self, name: str, block_id: bytes) -> None:
        """Delete one pool's copy of a block (an extra copy after repair); raises StorageError."""
        key = block_key(block_id)
        await self._pools.call(name, f"delete {key}", lambda pool: pool.delete(key), nbytes=0)
