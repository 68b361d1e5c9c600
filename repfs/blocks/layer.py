"""The block layer's interfaces: what the cache calls down into, and what the layer needs
of the metadata journal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PackedAt:
    """Where a block the journal carried was stored: in pack `key` at `offset`, on `pools`."""

    key: str
    offset: int
    length: int
    pools: tuple[str, ...]


class BlockSource(Protocol):
    """Where the cache gets a block's bytes and puts them back."""

    async def fetch(self, ino: int, index: int) -> bytes | None:
        """The plaintext of a file's block, or None for a hole."""
        ...

    async def store(self, ino: int, index: int, data: bytes, current: Callable[[], bool]) -> None:
        """Make `data` the content of the block, durably on the pools; `current()` says
        whether the block is still wanted when it is about to be mapped."""
        ...


class MappingJournal(Protocol):
    """The metadata journal as the block layer sees it."""

    @property
    def stored(self) -> int:
        """The last change set on the pools."""
        ...

    def kick(self) -> None:
        """Upload what is queued now (someone waits), without the grouping delay."""
        ...

    async def wait_stored(self, seq: int | None = None) -> None:
        """Return once change sets up to `seq` (default: all committed) are on the pools."""
        ...

    async def carry(self, block_id: bytes, obj: bytes, *, urgent: bool) -> PackedAt:
        """Send a block object in the next segment (a pack); where it was stored."""
        ...
