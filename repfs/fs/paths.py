"""The path of an inode, from the link table: for audit records and policy that needs a
file's place in the tree. One read per level; the first name of an inode with several.
And the other way: the inode of a path an administrator or user names (`resolve`)."""

from __future__ import annotations

from collections.abc import Callable

from repfs.errors import NotADirectory, NotFound
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

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


def resolve(meta: MetaStore, path: str, *, may_pass: Callable[[Txn, Inode], bool] | None = None) -> int:
    """The inode of `path`, relative to the root of the filesystem (NotFound, NotADirectory).
    With `may_pass`, a folder it refuses to go through answers as if the path did not
    exist (a user learns nothing of names it may not see)."""
    ino = s.ROOT_INO
    with meta.read() as t:
        for name in [p for p in path.split("/") if p and p != "."]:
            here = t.inode(ino)
            if not here.is_dir:
                if may_pass is not None:
                    raise NotFound(f"no such file or folder: {path}")
                raise NotADirectory(f"{name!r}: a component of the path is not a directory")
            child = t.lookup(ino, name.encode())
            if child is None or (may_pass is not None and not may_pass(t, here)):
                raise NotFound(f"no such file or folder: {path}")
            ino = child
    return ino
