"""The states a pool goes through, and what each allows.

    up ──(N missed heartbeats)──► down ──(answers again)──► verifying
     ▲                                                        │
     └──────────────(challenge passed)────────────────────────┤
                                                              ▼
    verifying ◄──(an administrator clears it)──────────── failed
                                                  (challenge failed)

    up ──(an administrator drains it)──► draining ──(removed)──► (gone)

    any ──(pools offline)──► offline ──(pools online)──► verifying

Only an `up` pool takes new blocks. A `draining` pool still serves reads (and deletes),
takes no new blocks and has no place in placement: the repairer copies each block it
holds to the block's placement pools, then deletes its copy. Draining is a decision of
an administrator, not a health state: it is persisted in repfs.toml, and a draining pool
that goes down and comes back returns to `draining`, not `up`. A pool that is
`verifying` is being challenged: blocks it should hold are fetched and compared with
the digest recorded when they were written. A `failed` pool is left alone until an
administrator clears it, and holds no place in the placement of new blocks meanwhile.
An `offline` pool was taken out on purpose by an administrator (to fix it by hand): no
reads, writes or heartbeats go to it and it raises no alarm; it keeps its place, so the
next pools of each block's order stand in and the blocks it misses are recorded for
repair. Put back online, it is challenged like a pool that returns. A verification that
is interrupted (the pool stops answering meanwhile) fails the pool, as seed 001 asks.
"""

from __future__ import annotations

from enum import Enum

import blake3


class PoolState(Enum):
    UP = "up"
    DOWN = "down"
    VERIFYING = "verifying"
    FAILED = "failed"
    DRAINING = "draining"
    OFFLINE = "offline"

    @property
    def serves(self) -> bool:
        """Whether reads (and deletes) go to a pool in this state."""
        return self in (PoolState.UP, PoolState.DRAINING)

    @property
    def takes_blocks(self) -> bool:
        """Whether new objects (blocks, journal segments) are written to a pool in this state."""
        return self is PoolState.UP

    @property
    def places(self) -> bool:
        """Whether blocks are placed on a pool in this state (a down pool keeps its place)."""
        return self not in (PoolState.FAILED, PoolState.DRAINING)


def object_digest(obj: bytes) -> bytes:
    """The digest of a stored object's bytes, recorded at write time and checked by challenges.

    Replicas of a block are byte-identical, so one digest serves every copy.
    """
    return blake3.blake3(obj).digest()
