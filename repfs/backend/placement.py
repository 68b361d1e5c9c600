"""Where a block lives: weighted rendezvous (highest random weight) hashing.

Every pool gets a score for a block, `-weight / ln(u)`, where `u` in (0, 1) is a hash of
the pool name and the block id; pools ranked by falling score are the block's placement
order, which is also its read priority. The first `replicas` pools of the order hold the
block.

Why this scheme: a pool's share of first choices is proportional to its weight; adding a
pool takes from each block only the place the new pool wins, and removing one moves only
the blocks it held, so a change of pools moves no more data than it must. The hash is
BLAKE2b, so the order is the same in every process and on every host; changing it would
move every block, so it is part of the on-disk format.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

_PERSON = b"repfs-hrw-v1"


def pool_hash(pool: str, block_id: bytes) -> float:
    """A number in (0, 1), uniform and fixed for a (pool, block id) pair."""
    name = pool.encode()
    digest = hashlib.blake2b(
        len(name).to_bytes(2, "big") + name + block_id, digest_size=8, person=_PERSON
    ).digest()
    top53 = int.from_bytes(digest, "big") >> 11
    return (top53 + 0.5) / (1 << 53)


def score(pool: str, weight: float, block_id: bytes) -> float:
    return -weight / math.log(pool_hash(pool, block_id))


def rank_pools(block_id: bytes, pools: Sequence[tuple[str, float]]) -> list[str]:
    """Every pool name, highest priority first, for the block `block_id`.

    `pools` is (name, weight) pairs; weights must be > 0 and names unique.
    """
    names = [name for name, _ in pools]
    if len(set(names)) != len(names):
        raise ValueError(f"pool names must be unique: {names}")
    for name, weight in pools:
        if not weight > 0 or math.isinf(weight):
            raise ValueError(f"pool {name}: weight must be a positive number, got {weight}")
    scored = sorted(((score(name, weight, block_id), name) for name, weight in pools), reverse=True)
    return [name for _, name in scored]
