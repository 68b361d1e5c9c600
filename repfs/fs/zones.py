"""Which account's namespace a directory lies in: the rule that a rename or hard link
between two namespaces is EXDEV (for root too: usage stays per namespace), and that a namespace's
own directory is renamed or removed only with its account (`repfs-admin users remove`).

A namespace is a top-level directory recorded in the `namespaces` database; a directory
is in the namespace its chain of parents reaches first. Directories outside every
namespace (the root, top-level directories that belong to no account) form one zone.
"""

from __future__ import annotations

from repfs.errors import CrossNamespace, NotPermitted
from repfs.meta import schema as s
from repfs.meta.store import Txn


def owner(t: Txn, ino: int) -> str | None:
    """The account whose namespace directory `ino` is, or None."""
    raw = t.get("namespaces", s.u64(ino))
    return raw.decode() if raw is not None else None


def namespace_of(t: Txn, directory: int) -> int | None:
    """The namespace directory that holds `directory` (or is it), None outside all."""
    ino = directory
    while ino != s.ROOT_INO:
        if owner(t, ino) is not None:
            return ino
        up = t.get("parents", s.inode_key(ino))
        if up is None:
            return None
        ino = s.from_u64(up)
    return None


def check_move(t: Txn, src_parent: int, dst_parent: int) -> None:
    """EXDEV for a rename from one namespace (or from outside all) into another."""
    if src_parent != dst_parent and namespace_of(t, src_parent) != namespace_of(t, dst_parent):
        raise CrossNamespace("a rename between namespaces is a copy: use cp or mv across devices")


def check_link(t: Txn, ino: int, new_parent: int) -> None:
    """EXDEV for a hard link into another namespace than the file's (by its first name)."""
    first = next(t.links_of(ino), None)
    if first is not None:
        check_move(t, first[0], new_parent)


def check_not_namespace(t: Txn, ino: int) -> None:
    """EPERM for renaming or removing a namespace's own directory."""
    name = owner(t, ino)
    if name is not None:
        raise NotPermitted(f"this is the namespace of account {name}: it goes with repfs-admin users remove {name}")
