"""`BlockCopies`: one pool's copy of a block at a time, for health challenges, repair,
scrub and checks (the block data path, with its quorum and stand-ins, is replicated.py).
"""

from __future__ import annotations

import trio

from repfs.backend.keys import block_key
from repfs.backend.poolset import PoolSet, reason
from repfs.backend.state import object_digest
from repfs.errors import ObjectNotFound, PoolFull, StorageError


class BlockCopies:
    def __init__(self, pools: PoolSet, *, cpu_limiter: trio.CapacityLimiter | None = None) -> None:
        self._pools = pools
        self._cpu_limiter = cpu_limiter if cpu_limiter is not None else trio.CapacityLimiter(2)

    async def read_copy(self, name: str, block_id: bytes, digest: bytes) -> tuple[bytes | None, str]:
        """One pool's copy of a block, checked against `digest`: (object, "") when good,
        (None, why) when missing, damaged or unreadable. Works in any pool state, so that
        a pool being verified can be challenged."""
        self._pools.check_name(name)
        key = block_key(block_id)
        try:
            obj = await self._pools.call(name, f"get {key}", lambda pool: pool.get(key), attempts=1)
        except ObjectNotFound:
            return None, "missing"
        except StorageError as exc:
            return None, reason(exc)
        got = await trio.to_thread.run_sync(object_digest, obj, limiter=self._cpu_limiter)
        if got != digest:
            return None, "corrupt: digest mismatch"
        return obj, ""

    async def has_copy(self, name: str, block_id: bytes) -> bool:
        """Whether pool `name` holds an object for the block (a soft check: not its content)."""
        self._pools.check_name(name)
        key = block_key(block_id)
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
