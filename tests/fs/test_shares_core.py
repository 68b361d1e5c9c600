"""Shares in the filesystem core, for callers the kernel has not checked (the web API to
come): fs/access.py reads the same computed ACL the kernel reads, so the table of role ×
operation is the one the mount test (tests/mount/test_shares.py) requires on the mount."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

import pytest

from repfs.errors import FsError
from repfs.fs import accounts as acc
from repfs.fs import acl
from repfs.fs.access import Caller
from repfs.fs.core import AttrChange
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import Rig
from tests.mount.test_shares import ALLOWED

pytestmark = pytest.mark.trio

ALICE, BOB, CAROL = Caller(2000, 2000), Caller(2001, 2001), Caller(2002, 2002)


def accounts(rig: Rig) -> None:
    with rig.meta.write() as t:
        for name, who in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
            acc.add(t, acc.Account(name, f"{name}@example.org", who.uid, who.gid))


async def code(fn: Callable[[], Awaitable[object]]) -> str:
    try:
        await fn()
    except FsError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


async def ops(rig: Rig, caller: Caller, folder: list[bytes], theirs: bytes, mine: bytes) -> dict[str, str]:
    """The mount test's operations, through the core as `caller` (path walks included)."""
    fs = rig.fs

    async def walk(names: list[bytes]) -> int:
        ino = ROOT_INO
        for name in names:
            ino = fs.lookup(caller, ino, name).ino
        return ino

    async def listing() -> None:
        fs.opendir(caller, await walk(folder))

    async def read() -> None:
        fs.release(await fs.open(caller, await walk([*folder, theirs]), os.O_RDONLY))

    async def write() -> None:
        fh = await fs.open(caller, await walk([*folder, theirs]), os.O_WRONLY)
        await fs.write(fh, 0, b"edited")
        fs.release(fh)

    async def truncate() -> None:
        await fs.setattr(caller, await walk([*folder, theirs]), AttrChange(size=3))

    async def create() -> None:
        fh, _ = fs.create(caller, await walk(folder), mine, 0o644, os.O_WRONLY)
        fs.release(fh)

    async def mkdir() -> None:
        fs.mkdir(caller, await walk(folder), mine + b".d", 0o755)

    async def unlink(name: bytes) -> None:
        fs.unlink(caller, await walk(folder), name)

    async def rename() -> None:
        at = await walk(folder)
        fs.rename(caller, at, theirs, at, b"renamed", 0)

    async def chmod() -> None:
        await fs.setattr(caller, await walk([*folder, theirs]), AttrChange(mode=0o666))

    return {
        "list": await code(listing),
        "read": await code(read),
        "write": await code(write),
        "truncate": await code(truncate),
        "create": await code(create),
        "mkdir": await code(mkdir),
        "unlink theirs": await code(lambda: unlink(theirs)),
        "rename theirs": await code(rename),
        "chmod theirs": await code(chmod),
        "unlink mine": await code(lambda: unlink(mine)),
    }


async def test_each_role_decides_in_the_core_as_on_the_mount(rig: Rig) -> None:
    accounts(rig)
    home = rig.fs.lookup(ALICE, ROOT_INO, b"alice").ino
    for role in ("reader", "editor", "master"):
        folder = rig.fs.mkdir(ALICE, home, role.encode(), 0o755)
        await rig.layers.shares.add(f"/alice/{role}", "bob", role, by_uid=ALICE.uid)
        for mode in (0o600, 0o644):
            name = f"made-{mode:o}".encode()
            fh, _ = rig.fs.create(ALICE, folder.ino, name, mode, os.O_WRONLY)
            await rig.fs.write(fh, 0, b"owner's data")
            rig.fs.release(fh)
            got = await ops(rig, BOB, [b"alice", role.encode()], name, f"bobs{mode:o}".encode())
            assert got == ALLOWED[role], (role, oct(mode), got)
        got = await ops(rig, CAROL, [b"alice", role.encode()], b"made-644", b"carols")
        assert got == ALLOWED["none"], (role, got)


async def test_the_kernel_is_shown_the_computed_acl_and_mask(rig: Rig) -> None:
    accounts(rig)
    home = rig.fs.lookup(ALICE, ROOT_INO, b"alice").ino
    d = rig.fs.mkdir(ALICE, home, b"docs", 0o700)
    fh, f = rig.fs.create(ALICE, d.ino, b"a", 0o600, os.O_WRONLY)
    rig.fs.release(fh)
    assert rig.fs.presented(rig.fs.getattr(f.ino)).mode & 0o777 == 0o600  # nothing shared yet
    await rig.layers.shares.add("/alice/docs", "bob", "editor", by_uid=ALICE.uid)
    got = acl.parse(rig.fs.getxattr(ALICE, f.ino, acl.ACCESS))
    assert acl.Entry(acl.USER, BOB.uid, 6) in got.entries and got.perm(acl.MASK) == 6
    assert rig.fs.presented(rig.fs.getattr(f.ino)).mode & 0o777 == 0o660  # group bits: the mask
    folder_acl = acl.parse(rig.fs.getxattr(ALICE, home, acl.ACCESS))
    assert acl.Entry(acl.USER, BOB.uid, 1) in folder_acl.entries  # --x on the way there
    await rig.layers.shares.remove("/alice/docs", "bob", by_uid=ALICE.uid)
    with pytest.raises(FsError):  # back to the mode alone: no ACL to show
        rig.fs.getxattr(ALICE, f.ino, acl.ACCESS)
