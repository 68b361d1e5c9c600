"""What a folder inherits from the folders above it, computed once per folder.

Shares, legal holds and retention rules all apply to a folder and everything in it. The
answer for a folder is its own rule combined with its parent's answer, so it is computed
from the highest folder not yet known down to the folder asked about, and each step is
kept in the metadata store's policy memo (read transactions only; every commit that
changes folders or these rules empties it). A stat then costs a few reads whatever the
depth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from repfs.meta import schema as s
from repfs.meta.store import Txn

MAX_DEPTH = 4096  # a cycle would be corruption: stop rather than loop

V = TypeVar("V")
_MISSING = object()


def chain(t: Txn, folder: int) -> list[int]:
    """`folder` and every folder above it, up to (not including) the root."""
    out: list[int] = []
    ino = folder
    while ino != s.ROOT_INO and len(out) < MAX_DEPTH:
        out.append(ino)
        up = t.get("parents", s.inode_key(ino))
        if up is None:
            break
        ino = s.from_u64(up)
    return out


def inherited(t: Txn, folder: int, tag: str, top: V, step: Callable[[int, V], V]) -> V:
    """The value of `folder`: `step(f, value above f)` for each folder from the top down,
    `top` being the value above the highest folder (the root's own rules are in `top`)."""
    memo = t.memo
    todo: list[int] = []
    value = top
    ino = folder
    while ino != s.ROOT_INO and len(todo) < MAX_DEPTH:
        hit = memo.get((tag, ino), _MISSING) if memo is not None else _MISSING
        if hit is not _MISSING:
            value = hit  # type: ignore[assignment]
            break
        todo.append(ino)
        up = t.get("parents", s.inode_key(ino))
        if up is None:
            break
        ino = s.from_u64(up)
    for f in reversed(todo):
        value = step(f, value)
        if memo is not None:
            memo[(tag, f)] = value
    return value
