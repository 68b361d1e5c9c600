"""Share operations of a mounted filesystem: add, remove, list. Typed results; the admin
socket and the user socket are transports over these (the rules are in `fs.shares`).

A change is one metadata transaction (journaled like any other). Then the kernel is told
to forget what it cached of the item, of everything below it that it knows, and of the
folders above it (their `--x` entries changed), so a revoke applies to new opens and path
walks at once. Open file descriptors keep the access they were opened with, as in POSIX.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio
import trio.lowlevel

from repfs.errors import InvalidArgument, NotFound
from repfs.fs import access
from repfs.fs import accounts as acc
from repfs.fs import shares as sh
from repfs.fs.access import Caller
from repfs.fs.accounts import AccountUnknown
from repfs.fs.audit import Audit
from repfs.fs.core import Filesystem
from repfs.fs.kernelcache import KernelCacheQueue
from repfs.fs.paths import path_of, resolve
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)

FORGET_BATCH = 500  # known inodes looked at between checkpoints


@dataclass(frozen=True)
class ShareInfo:
    path: str
    user: str  # the grantee
    role: str
    by: str
    since: float


def resolve_as(meta: MetaStore, path: str, uid: int) -> int:
    """The inode of `path` as `uid` may reach it (search permission on every folder on
    the way); root reaches everything."""
    if uid == 0:
        return resolve(meta, path)
    with meta.read() as t:
        account = acc.by_uid(t, uid)
    caller = Caller(uid, account.gid if account is not None else uid)
    return resolve(meta, path, may_pass=lambda t, folder: access.permitted(t, caller, folder, access.X_OK))


class ShareManager:
    def __init__(self, meta: MetaStore, fs: Filesystem, kernel: KernelCacheQueue, audit: Audit) -> None:
        self.meta = meta
        self.fs = fs
        self.kernel = kernel
        self.audit = audit

    def _who(self, t: Txn, uid: int) -> str:
        if uid == 0:
            return "root"
        account = acc.by_uid(t, uid)
        if account is None:
            raise AccountUnknown(f"uid {uid} has no account")
        return account.name

    async def add(self, path: str, user: str, role: str, *, by_uid: int) -> ShareInfo:
        """Share the item at `path` (relative to the mount's root) with account `user`."""
        sh.check_role(role)
        ino = self._resolve(path, by_uid)
        with self.meta.write() as t:
            inode = t.inode(ino)
            namespace = sh.namespace_of_item(t, ino)
            if namespace is None:
                raise InvalidArgument("only what lies in an account's namespace can be shared")
            grantee = acc.get_or_fail(t, user)
            if grantee.uid == t.inode(namespace).uid:
                raise InvalidArgument(f"{user} owns this namespace: it needs no share")
            self._may_change(t, by_uid, inode, namespace, role)
            share = sh.new_share(ino, grantee.name, grantee.uid, role, self._who(t, by_uid), namespace)
            sh.put(t, share)
            sh.mark_in_use(t)
            info = self._info(t, share)
        await self.forget_around(ino)
        self.audit.write(by_uid, "shares.add", info.path, user=user, role=role)
        log.info("%s shared %s with %s as %s", info.by, info.path, user, role)
        return info

    async def remove(self, path: str, user: str, *, by_uid: int) -> ShareInfo:
        """End `user`'s share of the item at `path` (the owner, a master, root, or the
        grantee itself, who may leave)."""
        ino = self._resolve(path, by_uid)
        with self.meta.write() as t:
            inode = t.inode(ino)
            grantee = acc.get_or_fail(t, user)
            share = sh.get(t, ino, grantee.uid)
            if share is None:
                raise NotFound(f"{path} is not shared with {user}")
            if by_uid != grantee.uid:
                self._may_change(t, by_uid, inode, share.namespace, share.role)
            info = self._info(t, share)
            sh.delete(t, share)
        await self.forget_around(ino)
        self.audit.write(by_uid, "shares.remove", info.path, user=user)
        log.info("share of %s with %s removed", info.path, user)
        return info

    def _resolve(self, path: str, uid: int) -> int:
        """The inode of `path` as `uid` may reach it: a folder it may not go through
        answers as if the path did not exist (a user learns nothing of others' names)."""
        return resolve_as(self.meta, path, uid)

    def _may_change(self, t: Txn, uid: int, inode: Inode, namespace: int, role: str) -> None:
        if uid == t.inode(namespace).uid:  # the namespace's owner: everything in it
            return
        sh.who_may_share(t, uid, inode, role)

    def on_path(self, path: str) -> list[ShareInfo]:
        """The shares of the item at `path` and of the folders above it (what applies)."""
        ino = resolve(self.meta, path)
        with self.meta.read() as t:
            inode = t.inode(ino)
            found = []
            for item in sorted(sh.above(t, inode)):
                found += [self._info(t, share) for share in sh.on_item(t, item)]
        return found

    def given_to(self, user: str) -> list[ShareInfo]:
        with self.meta.read() as t:
            account = acc.get_or_fail(t, user)
            return [self._info(t, share) for share in sh.of_grantee(t, account.uid)]

    def mine(self, uid: int) -> tuple[list[ShareInfo], list[ShareInfo]]:
        """(shares of items in `uid`'s namespace, shares given to `uid`)."""
        with self.meta.read() as t:
            account = acc.by_uid(t, uid)
            if account is None:
                raise AccountUnknown(f"uid {uid} has no account")
            home = acc.namespace_of(t, account)
            given = [self._info(t, share) for share in sh.of_grantee(t, uid)]
            if home is None:
                return [], given
            made = []
            for item, grantee_uid in sh.in_namespace(t, home.ino):
                share = sh.get(t, item, grantee_uid)
                if share is not None:
                    made.append(self._info(t, share))
            return made, given

    def every(self) -> list[ShareInfo]:
        with self.meta.read() as t:
            return [self._info(t, share) for share in sh.every(t)]

    def _info(self, t: Txn, share: sh.Share) -> ShareInfo:
        return ShareInfo(path_of(t, share.ino), share.grantee, share.role, share.by, share.since)

    async def forget_around(self, ino: int) -> None:
        """The kernel forgets the item, the folders above it (their `--x` entries), and
        what it knows below it: the inodes it holds are looked at a batch at a time, with
        a checkpoint between batches (requests go on)."""
        with self.meta.read() as t:
            inode = t.inode_or_none(ino)
            if inode is None:
                return
            doomed = sh.above(t, inode)
        for other in doomed:
            await self.kernel.forget_inode_surely(other)
        if not inode.is_dir:
            return
        known = [i for i in self.fs.lookups if i not in doomed]
        for start in range(0, len(known), FORGET_BATCH):
            with self.meta.read() as t:
                below = []
                for other in known[start : start + FORGET_BATCH]:
                    o = t.inode_or_none(other)
                    if o is not None and ino in sh.above(t, o):
                        below.append(other)
            for other in below:
                await self.kernel.forget_inode_surely(other)
            await trio.lowlevel.checkpoint()

    async def forget_items(self, items: list[int]) -> None:
        for ino in items:
            await self.forget_around(ino)
