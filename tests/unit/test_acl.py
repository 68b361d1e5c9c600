"""POSIX ACLs: the xattr format (golden vectors read off Linux's tmpfs), validation, the
mode they imply, inheritance, and the evaluator's answers (Linux's algorithm)."""

from __future__ import annotations

import os
import stat

import pytest

from repfs.errors import InvalidArgument
from repfs.fs import acl
from repfs.fs.access import Caller, allowed
from repfs.meta.records import Inode

# `setfacl -m u:1000:r f` on a 0644 file, and `setfacl -d -m u:1000:rx,g:27:rw d` on a
# 0755 directory, as tmpfs stores them (getfattr -e hex).
GOLDEN_ACCESS = bytes.fromhex(
    "0200000001000600ffffffff02000400e803000004000400ffffffff10000400ffffffff20000400ffffffff"
)
GOLDEN_DEFAULT = bytes.fromhex(
    "0200000001000700ffffffff02000500e803000004000500ffffffff080006001b00000010000700ffffffff20000500ffffffff"
)
U = acl.UNDEFINED_ID


def test_golden_vectors_parse_and_pack_back() -> None:
    a = acl.parse(GOLDEN_ACCESS)
    assert a.entries == (
        acl.Entry(acl.USER_OBJ, U, 6),
        acl.Entry(acl.USER, 1000, 4),
        acl.Entry(acl.GROUP_OBJ, U, 4),
        acl.Entry(acl.MASK, U, 4),
        acl.Entry(acl.OTHER, U, 4),
    )
    assert a.pack() == GOLDEN_ACCESS
    assert a.mode_bits() == 0o644 and a.extended
    d = acl.parse(GOLDEN_DEFAULT)
    assert d.pack() == GOLDEN_DEFAULT
    assert [e.qualifier for e in d.named(acl.GROUP)] == [27]


def test_unsorted_entries_are_sorted() -> None:
    entries = acl.parse(GOLDEN_ACCESS).entries
    raw = acl.Acl(tuple(reversed(entries))).pack()
    assert acl.parse(raw).pack() == GOLDEN_ACCESS


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x02\x00\x00",
        bytes.fromhex("03000000") + GOLDEN_ACCESS[4:],  # unknown version
        GOLDEN_ACCESS[:-1],  # a cut entry
        bytes.fromhex("02000000") + bytes.fromhex("01000600ffffffff"),  # no group, no other
        bytes.fromhex("0200000001000600ffffffff02000400e803000004000400ffffffff20000400ffffffff"),  # named, no mask
        bytes.fromhex("0200000001000800ffffffff04000400ffffffff20000400ffffffff"),  # perm 8
        bytes.fromhex("0200000001000600ffffffff40000400ffffffff04000400ffffffff20000400ffffffff"),  # tag 0x40
        bytes.fromhex(  # user 1000 twice
            "0200000001000600ffffffff02000400e803000002000600e803000004000400ffffffff10000400ffffffff20000400ffffffff"
        ),
    ],
)
def test_malformed_acls_are_refused(value: bytes) -> None:
    with pytest.raises(InvalidArgument):
        acl.parse(value)


def test_mode_drives_owner_mask_and_other() -> None:
    a = acl.parse(GOLDEN_ACCESS)
    b = a.with_mode(0o750)
    assert b.perm(acl.USER_OBJ) == 7 and b.perm(acl.MASK) == 5 and b.perm(acl.OTHER) == 0
    assert b.perm(acl.GROUP_OBJ) == 4  # the owning group's own entry is not the mask
    plain = acl.from_mode(0o640)
    assert not plain.extended and plain.with_mode(0o705).mode_bits() == 0o705


def _inherit(default: acl.Acl, kind: int, perm: int) -> tuple[int, dict[bytes, acl.Acl]]:
    class _T:  # the one read inherit() makes: the parent's default ACL
        def get(self, db: str, key: bytes) -> bytes | None:
            return default.pack() if key.endswith(acl.DEFAULT) else None

    parent = Inode(5, stat.S_IFDIR | 0o755, 0, 0, 2)
    got = acl.inherit(_T(), parent, kind, perm)  # type: ignore[arg-type]
    assert got is not None
    mode, xattrs = got
    return mode, {name: acl.parse(v) for name, v in xattrs}


def test_inheritance_masks_the_default_with_the_requested_mode() -> None:
    default = acl.parse(GOLDEN_DEFAULT)  # u::rwx u:1000:r-x g::r-x g:27:rw- m::rwx o::r-x
    mode, got = _inherit(default, stat.S_IFREG, 0o666)
    assert mode == 0o664  # owner rw, mask rw (from rwx & rw-), other r
    assert got[acl.ACCESS].perm(acl.USER) == 5  # named entries are kept; the mask limits them
    assert acl.DEFAULT not in got
    mode, got = _inherit(default, stat.S_IFDIR, 0o777)
    assert mode == 0o775 and got[acl.DEFAULT] == default
    plain = acl.from_mode(0o750)
    mode, got = _inherit(plain, stat.S_IFREG, 0o666)
    assert mode == 0o640 and acl.ACCESS not in got  # nothing beyond the mode: nothing stored


def test_symlinks_inherit_nothing() -> None:
    class _T:
        def get(self, db: str, key: bytes) -> bytes | None:
            return GOLDEN_DEFAULT

    parent = Inode(5, stat.S_IFDIR | 0o755, 0, 0, 2)
    assert acl.inherit(_T(), parent, stat.S_IFLNK, 0o777) is None  # type: ignore[arg-type]


# --- the evaluator ------------------------------------------------------------------------


def _file(mode: int, uid: int = 100, gid: int = 100) -> Inode:
    return Inode(9, stat.S_IFREG | mode, uid, gid, 1)


def _acl(*entries: tuple[int, int, int]) -> acl.Acl:
    return acl.validate(acl.Entry(t, q, p) for t, q, p in entries)


R, W, X = os.R_OK, os.W_OK, os.X_OK
BOB = Caller(200, 200)
BOB_IN_100 = Caller(200, 200, frozenset({100}))
BOB_IN_300 = Caller(200, 200, frozenset({300}))


@pytest.mark.parametrize(
    ("mode", "entries", "caller", "want", "expected"),
    [
        # a named user gets its entry, limited by the mask (the mode's group bits)
        (0o640, [(acl.USER, 200, 6)], BOB, R, True),
        (0o640, [(acl.USER, 200, 6)], BOB, W, False),
        (0o660, [(acl.USER, 200, 6)], BOB, W, True),
        # an empty mask: Linux skips the ACL and the caller is "other"
        (0o604, [(acl.USER, 200, 6)], BOB, R, True),
        (0o600, [(acl.USER, 200, 6)], BOB, R, False),
        # a named user entry wins over other, even when other grants more
        (0o647, [(acl.USER, 200, 0)], BOB, R, False),
        # groups: any matching group entry that grants everything; else denied, not "other"
        (0o660, [(acl.GROUP, 300, 6)], BOB_IN_300, W, True),
        (0o646, [(acl.GROUP, 300, 4)], BOB_IN_300, W, False),
        (0o646, [(acl.GROUP, 300, 4)], BOB, W, True),
        # the owning group's own entry (GROUP_OBJ), limited by the mask
        (0o640, [(acl.GROUP, 300, 6)], BOB_IN_100, R, True),
        (0o660, [(acl.GROUP, 300, 6)], BOB_IN_100, W, False),  # GROUP_OBJ is r--
    ],
)
def test_acl_evaluation_follows_linux(
    mode: int, entries: list[tuple[int, int, int]], caller: Caller, want: int, expected: bool
) -> None:
    owner, mask, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    base = [(acl.USER_OBJ, U, owner), (acl.GROUP_OBJ, U, 4), (acl.MASK, U, mask), (acl.OTHER, U, other)]
    a = _acl(*base, *entries)
    assert allowed(caller, _file(mode), want, a) is expected


def test_owner_and_root_ignore_the_acl() -> None:
    a = _acl((acl.USER_OBJ, U, 0), (acl.USER, 100, 7), (acl.GROUP_OBJ, U, 7), (acl.MASK, U, 7), (acl.OTHER, U, 7))
    owner = Caller(100, 100)
    assert not allowed(owner, _file(0o077), R, a)
    assert allowed(Caller(0, 0), _file(0o000), R | W, a)
    assert not allowed(Caller(0, 0), _file(0o666), X, a)
    assert allowed(Caller(0, 0), _file(0o001), X, a)
