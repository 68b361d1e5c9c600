"""The path of an inode, from the link table: for audit records and policy that needs a
file's place in the tree. One read per level; the first name of an inode with several."""

from __future__ import annotations

from repfs.meta import schema as s
from repfs.meta.store import Txn

MAX_DEPTH = 4096  # a cycle would be corruption: stop rather than loop


def path_of(t: Txn, ino: int) -> str:
    """`/a/b/c`, or `<unlinked>/INO` for an inode with no name left (open, deleted)."""
    parts: list[bytes] = []
    at = ino
    while at != s.ROOT_INO and len(parts) < MAX_DEPTH:
        link = next(t.links_of(at), None)
        if link is None:
            tail = b"/".join(reversed(parts)).decode(errors="replace")
            return f"<unlinked>/{at}" + (f"/{tail}" if tail else "")
        at, name = link
        parts.append(name)
    return "/" + b"/".join(reversed(parts)).decode(errors="replace")


def child_path(t: Txn, parent: int, name: bytes) -> str:
    base = path_of(t, parent)
    return base.rstrip("/") + "/" + name.decode(errors="replace")
