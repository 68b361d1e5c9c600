"""ACLs in the filesystem core, for callers the kernel has not checked (the later HTTPS
API, sweepers): the same rules as on the mount, decided by repfs/fs/access.py."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from repfs.errors import FsError
from repfs.fs import acl
from repfs.fs.access import Caller
from repfs.fs.core import AttrChange
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import ALICE, BOB, ROOT, Rig, errno_of

pytestmark = pytest.mark.trio

U = acl.UNDEFINED_ID


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return acl.validate(acl.Entry(t, q, p) for t, q, p in entries).pack()


async def test_a_default_acl_replaces_the_umask_and_is_inherited(rig: Rig) -> None:
    d = rig.fs.mkdir(ROOT, ROOT_INO, b"shared", 0o755)
    rig.fs.setxattr(
        ROOT,
        d.ino,
        acl.DEFAULT,
        _acl((acl.USER_OBJ, U, 7), (acl.USER, BOB.uid, 6), (acl.GROUP_OBJ, U, 7), (acl.MASK, U, 7), (acl.OTHER, U, 0)),
    )
    umask022 = Caller(ALICE.uid, ALICE.gid, umask=0o022)
    await rig.fs.setattr(ROOT, d.ino, AttrChange(mode=0o777))
    fh, f = rig.fs.create(umask022, d.ino, b"report", 0o666, os.O_WRONLY)
    rig.fs.release(fh)
    assert stat.S_IMODE(f.mode) == 0o660  # not 0o644: the default ACL, not the umask, decides
    got = acl.parse(rig.fs.getxattr(ROOT, f.ino, acl.ACCESS))
    assert [e.qualifier for e in got.named(acl.USER)] == [BOB.uid]
    fh = await rig.fs.open(BOB, f.ino, os.O_WRONLY)  # bob's entry lets him write
    rig.fs.release(fh)
    sub = rig.fs.mkdir(umask022, d.ino, b"sub", 0o777)
    assert rig.fs.getxattr(ROOT, sub.ino, acl.DEFAULT) == rig.fs.getxattr(ROOT, d.ino, acl.DEFAULT)
    link = rig.fs.symlink(umask022, d.ino, b"link", b"report")
    assert acl.ACCESS not in rig.fs.listxattr(ROOT, link.ino)
    plain = rig.fs.mkdir(Caller(0, 0, umask=0o022), ROOT_INO, b"plain", 0o777)
    assert stat.S_IMODE(plain.mode) == 0o755  # no default ACL: the umask applies


async def test_chmod_moves_the_mask_and_only_the_owner_sets_acls(rig: Rig) -> None:
    fh, f = rig.fs.create(ROOT, ROOT_INO, b"f", 0o640, os.O_WRONLY)
    rig.fs.release(fh)
    await rig.fs.setattr(ROOT, f.ino, AttrChange(uid=ALICE.uid, gid=ALICE.gid))
    value = _acl(
        (acl.USER_OBJ, U, 6), (acl.USER, BOB.uid, 6), (acl.GROUP_OBJ, U, 4), (acl.MASK, U, 6), (acl.OTHER, U, 0)
    )
    with pytest.raises(FsError) as e:
        rig.fs.setxattr(BOB, f.ino, acl.ACCESS, value)
    assert errno_of(e) == errno.EPERM
    rig.fs.setxattr(ALICE, f.ino, acl.ACCESS, value)
    assert stat.S_IMODE(rig.fs.getattr(f.ino).mode) == 0o660
    fh = await rig.fs.open(BOB, f.ino, os.O_RDWR)
    rig.fs.release(fh)
    await rig.fs.setattr(ALICE, f.ino, AttrChange(mode=0o600))  # the mask goes to ---
    assert acl.parse(rig.fs.getxattr(BOB, f.ino, acl.ACCESS)).perm(acl.MASK) == 0
    with pytest.raises(FsError) as e:
        await rig.fs.open(BOB, f.ino, os.O_RDONLY)
    assert errno_of(e) == errno.EACCES
    # an ACL that says no more than a mode is not stored: only the mode changes
    rig.fs.setxattr(ALICE, f.ino, acl.ACCESS, _acl((acl.USER_OBJ, U, 6), (acl.GROUP_OBJ, U, 4), (acl.OTHER, U, 4)))
    assert stat.S_IMODE(rig.fs.getattr(f.ino).mode) == 0o644
    assert acl.ACCESS not in rig.fs.listxattr(ROOT, f.ino)
    with pytest.raises(FsError) as e:
        rig.fs.getxattr(ROOT, f.ino, acl.ACCESS)
    assert errno_of(e) == errno.ENODATA
    for bad in (b"\x02\x00\x00\x00", b"garbage"):
        with pytest.raises(FsError) as e:
            rig.fs.setxattr(ALICE, f.ino, acl.ACCESS, bad)
        assert errno_of(e) == errno.EINVAL
    with pytest.raises(FsError) as e:  # a default ACL belongs on a directory
        rig.fs.setxattr(ALICE, f.ino, acl.DEFAULT, value)
    assert errno_of(e) == errno.EACCES
