"""The states a pool goes through, and what each allows.

    up ──(N missed heartbeats)──► down ──(answers again)──► verifying
     ▲                                                        │
     └──────────────(challenge passed)────────────────────────┤
                                                              ▼
    verifying ◄──(an administrator clears it)──────────── failed
                                                  (challenge failed)

Only an `up` pool is read from or written to. A pool that is `verifying` is being
challenged: blocks it should hold are fetched and compared with the digest recorded when
they were written. A `failed` pool is left alone until an administrator clears it, and
holds no place in the placement of new blocks meanwhile.
"""

from __future__ import annotations

from enum import Enum

import blake3


class PoolState(Enum):
    UP = "up"
    DOWN = "down"
    VERIFYING = "verifying"
    FAILED = "failed"

    @property
    def serves(self) -> bool:
        """Whether reads and writes go to a pool in this state."""
        return self is PoolState.UP

    @property
    def places(self) -> bool:
        """Whether blocks are placed on a pool in this state (a down pool keeps its place)."""
        return self is not PoolState.FAILED


def object_digest(obj: bytes) -> bytes:
    """The digest of a stored object's bytes, recorded at write time and checked by challenges.

    Replicas of a block are byte-identical, so one digest serves every copy.
    """
    return blake3.blake3(obj).digest()
