"""POSIX semantics through a real mount.

Most tests share one mount (module scope) and work in a fresh directory of their own;
where the answer is "what Linux does", the same operation runs in a directory on the
local disk (`env.ref`) and the two results are compared. Tests that measure the pools
use a mount of their own.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    Repfs,
    check_logs,
    errno_name,
    opened,
    oserror,
    register,
    renameat2,
)

pytestmark = pytest.mark.timeout(120)

BS = 64 * 1024
MiB = 1 << 20


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repfs]:
    fs = Repfs(tmp_path_factory.mktemp("posix"))
    fs.mkfs()
    fs.mount()
    try:
        yield fs
    finally:
        fs.cleanup()


@dataclass
class Env:
    fs: Repfs
    d: Path  # a fresh directory on the mount
    ref: Path  # a fresh directory on the local disk


@pytest.fixture
def env(shared: Repfs, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if not shared.alive:  # an earlier test killed it (and failed for it)
        shared.cleanup()
        shared.mount()
    register(request.node, shared)
    mark = shared.log_size()
    d = shared.mnt / re.sub(r"[^\w.-]", "_", request.node.name)[:200]
    d.mkdir()
    ref = tmp_path / "ref"
    ref.mkdir()
    yield Env(shared, d, ref)
    assert shared.alive, f"the daemon died during the test; log:\n{shared.log_tail()}"
    check_logs(shared, mark)


def both(env: Env, op: Callable[[Path], Any]) -> int | None:
    """Run `op` under the mount's directory and the reference one; the errnos must agree."""
    got, want = oserror(lambda: op(env.d)), oserror(lambda: op(env.ref))
    assert errno_name(got) == errno_name(want), f"repfs: {errno_name(got)}, local disk: {errno_name(want)}"
    return got


def expect_errno(code: int, fn: Callable[[], Any]) -> None:
    got = oserror(fn)
    assert got == code, f"expected {errno_name(code)}, got {errno_name(got)}"


def pattern(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# --- links ------------------------------------------------------------------------------


def test_hard_links(env: Env) -> None:
    d = env.d
    (d / "a").write_bytes(b"hello")
    os.mkdir(d / "sub")
    os.link(d / "a", d / "b")
    os.link(d / "a", d / "sub" / "c")
    sa, sb, sc = (os.stat(p) for p in (d / "a", d / "b", d / "sub" / "c"))
    assert sa.st_ino == sb.st_ino == sc.st_ino
    assert sa.st_nlink == sb.st_nlink == sc.st_nlink == 3
    with open(d / "b", "r+b") as f:  # content is shared
        f.seek(5)
        f.write(b", world")
    assert (d / "a").read_bytes() == (d / "sub" / "c").read_bytes() == b"hello, world"
    os.unlink(d / "a")
    assert os.stat(d / "b").st_nlink == 2
    os.rename(d / "b", d / "sub" / "c")  # two names of one inode: nothing happens
    assert os.path.exists(d / "b") and os.stat(d / "b").st_nlink == 2
    os.unlink(d / "sub" / "c")
    assert os.stat(d / "b").st_nlink == 1
    assert (d / "b").read_bytes() == b"hello, world"
    expect_errno(errno.EPERM, lambda: os.link(d / "sub", d / "sublink"))  # no links to directories
    expect_errno(errno.EEXIST, lambda: os.link(d / "b", d / "sub"))
    expect_errno(errno.ENOENT, lambda: os.link(d / "missing", d / "x"))
    assert os.stat(d).st_nlink == 3  # ".", its name, and sub's ".."


def test_names_looked_up_while_missing_appear_when_made(env: Env) -> None:
    """The kernel caches "no such name" (negative entries); every way of making a name
    must still show it at once, and removing it must hide it again."""
    d = env.d
    os.mkdir(d / "other")
    (d / "other" / "src").write_bytes(b"moved")
    (d / "linked").write_bytes(b"linked")
    makers: dict[str, Callable[[Path], Any]] = {
        "created": lambda p: p.write_bytes(b"x"),
        "dir": os.mkdir,
        "symlink": lambda p: os.symlink("target", p),
        "hardlink": lambda p: os.link(d / "linked", p),
        "renamed": lambda p: os.rename(d / "other" / "src", p),
        "fifo": os.mkfifo,
    }
    for name, make in makers.items():
        path = d / name
        for _ in range(3):  # looked up again and again while missing
            expect_errno(errno.ENOENT, functools.partial(os.lstat, path))
        make(path)
        assert os.lstat(path).st_ino > 0, name
    assert (d / "renamed").read_bytes() == b"moved"
    expect_errno(errno.ENOENT, lambda: os.lstat(d / "other" / "src"))
    os.unlink(d / "created")
    expect_errno(errno.ENOENT, lambda: os.lstat(d / "created"))
    (d / "created").write_bytes(b"again")
    assert (d / "created").read_bytes() == b"again"


def test_symlinks(env: Env) -> None:
    d = env.d
    (d / "target").write_bytes(b"data")
    os.mkdir(d / "dir")
    os.symlink("target", d / "s")
    os.symlink("../target", d / "dir" / "up")
    os.symlink("dir", d / "sdir")
    os.symlink("nowhere/at/all", d / "dangling")
    long_target = "x/" * 2000 + "y"
    os.symlink(long_target, d / "long")
    assert os.readlink(d / "s") == "target"
    assert (d / "s").read_bytes() == (d / "dir" / "up").read_bytes() == b"data"
    assert os.listdir(d / "sdir") == ["up"]
    assert os.readlink(d / "long") == long_target
    st = os.lstat(d / "dangling")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("nowhere/at/all")
    assert not os.path.exists(d / "dangling")
    expect_errno(errno.ENOENT, lambda: open(d / "dangling", "rb").close())
    expect_errno(errno.EINVAL, lambda: os.readlink(d / "target"))
    expect_errno(errno.EEXIST, lambda: os.symlink("x", d / "s"))
    # creating through a dangling symlink creates its target (like any filesystem)
    os.symlink("made", d / "maker")
    (d / "maker").write_bytes(b"via link")
    assert (d / "made").read_bytes() == b"via link"
    os.unlink(d / "s")
    assert (d / "target").read_bytes() == b"data"


# --- rename -----------------------------------------------------------------------------


def test_rename_over_files_and_empty_dirs(env: Env) -> None:
    d = env.d
    (d / "a").write_bytes(pattern(3 * BS + 5, 1))
    (d / "b").write_bytes(b"old b")
    os.rename(d / "a", d / "b")
    assert not (d / "a").exists()
    assert (d / "b").read_bytes() == pattern(3 * BS + 5, 1)
    os.mkdir(d / "d1")
    (d / "d1" / "inside").write_bytes(b"in d1")
    os.mkdir(d / "d2")
    os.rename(d / "d1", d / "d2")  # over an empty directory
    assert not (d / "d1").exists()
    assert (d / "d2" / "inside").read_bytes() == b"in d1"
    os.mkdir(d / "other")
    os.rename(d / "d2", d / "other" / "moved")  # to another parent: ".." follows
    assert os.stat(d / "other" / "moved" / "..").st_ino == os.stat(d / "other").st_ino
    assert os.stat(d / "other").st_nlink == 3
    assert os.stat(d).st_nlink == 3
    os.rename(d / "b", d / "other" / "moved" / "b2")
    assert sorted(os.listdir(d / "other" / "moved")) == ["b2", "inside"]


def test_rename_errors(env: Env) -> None:
    def setup(r: Path) -> None:
        os.mkdir(r / "full")
        (r / "full" / "x").write_bytes(b"x")
        os.mkdir(r / "empty")
        (r / "file").write_bytes(b"f")
        os.mkdir(r / "full" / "sub")

    setup(env.d)
    setup(env.ref)
    assert both(env, lambda r: os.rename(r / "empty", r / "full")) == errno.ENOTEMPTY
    assert both(env, lambda r: os.rename(r / "file", r / "empty")) == errno.EISDIR
    assert both(env, lambda r: os.rename(r / "empty", r / "file")) == errno.ENOTDIR
    assert both(env, lambda r: os.rename(r / "full", r / "full" / "sub" / "deeper")) == errno.EINVAL
    assert both(env, lambda r: os.rename(r / "missing", r / "x")) == errno.ENOENT
    assert both(env, lambda r: os.rename(r / "file", r / "nodir" / "x")) == errno.ENOENT
    assert both(env, lambda r: os.rename(r / "file", r / "file" / "x")) == errno.ENOTDIR
    assert (env.d / "full" / "x").read_bytes() == b"x" and (env.d / "file").read_bytes() == b"f"


def test_renameat2_noreplace_and_exchange(env: Env) -> None:
    d = env.d
    (d / "a").write_bytes(b"A")
    (d / "b").write_bytes(b"B")
    expect_errno(errno.EEXIST, lambda: renameat2(d / "a", d / "b", RENAME_NOREPLACE))
    assert (d / "a").read_bytes() == b"A" and (d / "b").read_bytes() == b"B"
    renameat2(d / "a", d / "c", RENAME_NOREPLACE)
    assert not (d / "a").exists() and (d / "c").read_bytes() == b"A"

    ino_b, ino_c = os.stat(d / "b").st_ino, os.stat(d / "c").st_ino
    renameat2(d / "b", d / "c", RENAME_EXCHANGE)
    assert (d / "b").read_bytes() == b"A" and (d / "c").read_bytes() == b"B"
    assert os.stat(d / "b").st_ino == ino_c and os.stat(d / "c").st_ino == ino_b

    os.mkdir(d / "dir")
    (d / "dir" / "x").write_bytes(b"x")
    os.mkdir(d / "p")
    os.rename(d / "c", d / "p" / "f")
    renameat2(d / "dir", d / "p" / "f", RENAME_EXCHANGE)  # a directory and a file, across parents
    assert (d / "dir").read_bytes() == b"B"
    assert (d / "p" / "f" / "x").read_bytes() == b"x"
    assert os.stat(d / "p" / "f" / "..").st_ino == os.stat(d / "p").st_ino
    assert os.stat(d / "p").st_nlink == 3 and os.stat(d).st_nlink == 3
    expect_errno(errno.ENOENT, lambda: renameat2(d / "b", d / "missing", RENAME_EXCHANGE))
    expect_errno(errno.EINVAL, lambda: renameat2(d / "b", d / "dir", RENAME_EXCHANGE | RENAME_NOREPLACE))


# --- attributes -------------------------------------------------------------------------


def test_xattrs(env: Env) -> None:
    f = env.d / "f"
    f.write_bytes(b"x")
    os.mkdir(env.d / "dir")
    assert os.listxattr(f) == []
    os.setxattr(f, "user.a", b"1")
    os.setxattr(f, "user.bin", b"\0\xff\0binary\n")
    os.setxattr(f, "user.empty", b"")
    big = pattern(65536, 7)
    os.setxattr(f, "user.big", big)
    os.setxattr(env.d / "dir", "user.on-dir", b"d")
    assert os.getxattr(f, "user.a") == b"1"
    assert os.getxattr(f, "user.bin") == b"\0\xff\0binary\n"
    assert os.getxattr(f, "user.empty") == b""
    assert os.getxattr(f, "user.big") == big
    assert sorted(os.listxattr(f)) == ["user.a", "user.big", "user.bin", "user.empty"]
    assert os.listxattr(env.d / "dir") == ["user.on-dir"]
    os.setxattr(f, "user.a", b"22")  # replace
    assert os.getxattr(f, "user.a") == b"22"
    expect_errno(errno.ENODATA, lambda: os.getxattr(f, "user.missing"))
    expect_errno(errno.ENODATA, lambda: os.removexattr(f, "user.missing"))
    expect_errno(errno.EEXIST, lambda: os.setxattr(f, "user.a", b"3", os.XATTR_CREATE))
    expect_errno(errno.ENODATA, lambda: os.setxattr(f, "user.new", b"3", os.XATTR_REPLACE))
    os.setxattr(f, "user.a", b"333", os.XATTR_REPLACE)
    os.setxattr(f, "user.new", b"4", os.XATTR_CREATE)
    os.removexattr(f, "user.bin")
    assert sorted(os.listxattr(f)) == ["user.a", "user.big", "user.empty", "user.new"]
    env.fs.remount()
    assert os.getxattr(f, "user.a") == b"333" and os.getxattr(f, "user.big") == big
    assert sorted(os.listxattr(f)) == ["user.a", "user.big", "user.empty", "user.new"]
    # a new file under the same name has none of the old file's attributes
    os.unlink(f)
    f.write_bytes(b"y")
    assert os.listxattr(f) == []


def test_chmod_chown_utime(env: Env) -> None:
    def prepare(r: Path) -> None:
        (r / "f").write_bytes(b"x")
        os.mkdir(r / "d")
        os.symlink("f", r / "l")

    def chmod(r: Path, name: str, mode: int) -> None:
        os.chmod(r / name, mode)

    def chown(r: Path, name: str, uid: int, gid: int) -> None:
        os.chown(r / name, uid, gid)

    prepare(env.d)
    prepare(env.ref)
    for mode in (0o600, 0o4755, 0o2755, 0o1777, 0o6711, 0o000, 0o7777):
        for name in ("f", "d"):
            both(env, functools.partial(chmod, name=name, mode=mode))
            got, want = os.stat(env.d / name).st_mode, os.stat(env.ref / name).st_mode
            assert oct(got) == oct(want), (name, oct(mode))
    for mode, uid, gid in ((0o6755, 1234, 5678), (0o4755, -1, 99), (0o2755, 42, -1), (0o755, 0, 0)):
        for name in ("f", "d"):
            both(env, functools.partial(chmod, name=name, mode=mode))
            both(env, functools.partial(chown, name=name, uid=uid, gid=gid))
            a, b = os.stat(env.d / name), os.stat(env.ref / name)
            assert (oct(a.st_mode), a.st_uid, a.st_gid) == (oct(b.st_mode), b.st_uid, b.st_gid), (name, mode, uid, gid)
    os.chown(env.d / "l", 77, 88, follow_symlinks=False)
    assert (os.lstat(env.d / "l").st_uid, os.lstat(env.d / "l").st_gid) == (77, 88)
    assert os.stat(env.d / "f").st_uid == 0

    os.chmod(env.d / "f", 0o640)
    os.chown(env.d / "f", 1000, 1001)
    times = (1_234_567_890_123_456_789, 987_654_321_987_654_321)
    os.utime(env.d / "f", ns=times)
    os.utime(env.d / "d", ns=(1, 2))
    os.utime(env.d / "l", ns=(3_000_000_003, 4_000_000_004), follow_symlinks=False)
    st = os.stat(env.d / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == times
    assert os.stat(env.d / "d").st_mtime_ns == 2
    assert os.lstat(env.d / "l").st_mtime_ns == 4_000_000_004
    before = os.stat(env.d / "d").st_ctime_ns
    env.fs.remount()
    st = os.stat(env.d / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1001)
    assert (st.st_atime_ns, st.st_mtime_ns) == times
    assert os.lstat(env.d / "l").st_mtime_ns == 4_000_000_004
    assert os.stat(env.d / "d").st_ctime_ns == before
    now = os.stat(env.d).st_mtime_ns
    os.utime(env.d / "f")  # to now
    assert abs(os.stat(env.d / "f").st_mtime_ns - now) < 60 * 10**9


def test_special_files(env: Env) -> None:
    d = env.d
    os.mkfifo(d / "fifo", 0o640)
    os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(d / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 42))
    os.mknod(d / "sock", stat.S_IFSOCK | 0o644)
    os.mknod(d / "plain", 0o644)

    def check() -> None:
        st = os.stat(d / "fifo")
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 & ~umask
        st = os.stat(d / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert stat.S_IMODE(st.st_mode) == 0o666 & ~umask
        st = os.stat(d / "blk")
        assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 42)
        assert stat.S_ISSOCK(os.stat(d / "sock").st_mode)
        assert stat.S_ISREG(os.stat(d / "plain").st_mode) and os.stat(d / "plain").st_size == 0

    umask = os.umask(0)
    os.umask(umask)
    check()
    # a FIFO on the mount works as a pipe
    r = os.open(d / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with opened(d / "fifo", os.O_WRONLY) as w:
            os.write(w, b"through the fifo")
        assert os.read(r, 100) == b"through the fifo"
    finally:
        os.close(r)
    env.fs.remount()
    check()


def test_name_lengths(env: Env) -> None:
    d = env.d
    ok, too_long = "n" * 255, "n" * 256
    utf8 = "é" * 127 + "a"  # 255 bytes
    assert len(utf8.encode()) == 255
    (d / ok).write_bytes(b"255")
    (d / utf8).write_bytes(b"utf8")
    os.mkdir(d / ("D" * 255))
    os.symlink(ok, d / ("S" * 255))
    os.link(d / ok, d / ("L" * 255))
    os.rename(d / ("L" * 255), d / ("R" * 255))
    assert (d / ok).read_bytes() == b"255" and (d / utf8).read_bytes() == b"utf8"
    assert set(os.listdir(d)) == {ok, utf8, "D" * 255, "S" * 255, "R" * 255}
    for op in (
        lambda: os.open(d / too_long, os.O_CREAT | os.O_WRONLY),
        lambda: os.mkdir(d / too_long),
        lambda: os.stat(d / too_long),
        lambda: os.symlink("x", d / too_long),
        lambda: os.link(d / ok, d / too_long),
        lambda: os.rename(d / ok, d / too_long),
        lambda: os.mknod(d / too_long),
        lambda: os.unlink(d / too_long),
        lambda: os.open(d / ("é" * 128), os.O_CREAT | os.O_WRONLY),  # 256 bytes, 128 characters
    ):
        expect_errno(errno.ENAMETOOLONG, op)
    assert (d / ok).read_bytes() == b"255"


def test_errno_cases(env: Env) -> None:
    def prepare(r: Path) -> None:
        (r / "file").write_bytes(b"f")
        os.mkdir(r / "dir")
        (r / "dir" / "x").write_bytes(b"x")
        os.mkdir(r / "empty")

    prepare(env.d)
    prepare(env.ref)
    cases: list[tuple[int, Callable[[Path], Any]]] = [
        (errno.ENOENT, lambda r: os.open(r / "missing", os.O_RDONLY)),
        (errno.ENOENT, lambda r: os.stat(r / "missing" / "x")),
        (errno.ENOENT, lambda r: os.unlink(r / "missing")),
        (errno.ENOENT, lambda r: os.rmdir(r / "missing")),
        (errno.ENOENT, lambda r: os.mkdir(r / "missing" / "x")),
        (errno.ENOTDIR, lambda r: os.stat(r / "file" / "x")),
        (errno.ENOTDIR, lambda r: os.open(r / "file" / "x", os.O_CREAT | os.O_WRONLY)),
        (errno.ENOTDIR, lambda r: os.mkdir(r / "file" / "x")),
        (errno.ENOTDIR, lambda r: os.listdir(r / "file")),
        (errno.ENOTDIR, lambda r: os.rmdir(r / "file")),
        (errno.EISDIR, lambda r: os.open(r / "dir", os.O_WRONLY)),
        (errno.EISDIR, lambda r: os.open(r / "dir", os.O_RDWR)),
        (errno.EISDIR, lambda r: os.unlink(r / "dir")),
        (errno.EISDIR, lambda r: os.truncate(r / "dir", 0)),
        (errno.ENOTEMPTY, lambda r: os.rmdir(r / "dir")),
        (errno.EEXIST, lambda r: os.mkdir(r / "dir")),
        (errno.EEXIST, lambda r: os.mkdir(r / "file")),
        (errno.EEXIST, lambda r: os.symlink("x", r / "dir")),
        (errno.EINVAL, lambda r: os.rmdir(f"{r}/empty/.")),
        (errno.EINVAL, lambda r: os.truncate(r / "file", -1)),
    ]
    for i, (code, op) in enumerate(cases):
        got = both(env, op)
        assert got == code, f"case {i}: expected {errno_name(code)}, both gave {errno_name(got)}"
    with opened(env.d / "dir", os.O_RDONLY) as fd:
        expect_errno(errno.EISDIR, lambda: os.read(fd, 10))
    with opened(env.d / "file", os.O_RDONLY) as fd:
        expect_errno(errno.EBADF, lambda: os.write(fd, b"no"))
    with opened(env.d / "file", os.O_WRONLY) as fd:
        expect_errno(errno.EBADF, lambda: os.read(fd, 1))
    assert (env.d / "file").read_bytes() == b"f"
    assert sorted(os.listdir(env.d)) == ["dir", "empty", "file"]


# --- file data --------------------------------------------------------------------------


def test_exclusive_create_and_append(env: Env) -> None:
    d = env.d
    with opened(d / "new", os.O_CREAT | os.O_EXCL | os.O_WRONLY) as fd:
        os.write(fd, b"first")
    expect_errno(errno.EEXIST, lambda: os.open(d / "new", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    os.symlink("nothing-there", d / "dangling")
    expect_errno(errno.EEXIST, lambda: os.open(d / "dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    assert not (d / "nothing-there").exists()
    assert (d / "new").read_bytes() == b"first"

    a = os.open(d / "new", os.O_WRONLY | os.O_APPEND)
    b = os.open(d / "new", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(a, b"-a1")
        os.write(b, b"-b1")
        os.write(a, b"-a2")
        os.lseek(b, 0, os.SEEK_SET)  # appends go to the end wherever the offset is
        os.write(b, b"-b2")
        big = pattern(2 * BS + 3, 2)
        os.write(a, big)
        os.write(b, b"-end")
    finally:
        os.close(a)
        os.close(b)
    assert (d / "new").read_bytes() == b"first-a1-b1-a2-b2" + big + b"-end"
    with open(d / "new", "ab") as f:
        f.write(b"!")
    assert (d / "new").read_bytes().endswith(b"-end!")


def test_odd_offsets_across_block_boundaries(env: Env) -> None:
    rng = random.Random(1234)
    path = env.d / "odd"
    model = bytearray()
    edges = [0, 1, BS - 1, BS, BS + 1, 2 * BS - 3, 3 * BS, 4 * BS + 17]
    with opened(path, os.O_CREAT | os.O_RDWR) as fd:
        for i in range(60):
            off = rng.choice(edges) + rng.randint(-2, 2) if i % 2 else rng.randint(0, 5 * BS)
            off = max(off, 0)
            data = rng.randbytes(rng.choice([1, 2, 7, BS - 1, BS, BS + 1, 2 * BS + 5, rng.randint(1, 3 * BS)]))
            assert os.pwrite(fd, data, off) == len(data)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off : off + len(data)] = data
            for _ in range(3):
                roff = rng.randint(0, len(model) + 10)
                rlen = rng.randint(0, 2 * BS + 10)
                assert os.pread(fd, rlen, roff) == bytes(model[roff : roff + rlen]), (i, roff, rlen)
        assert os.fstat(fd).st_size == len(model)
    assert path.read_bytes() == model
    env.fs.remount()  # a cold cache: every block comes from the pools
    with opened(path, os.O_RDONLY) as fd:
        for _ in range(50):
            roff = rng.randint(0, len(model))
            rlen = rng.randint(1, 3 * BS)
            assert os.pread(fd, rlen, roff) == bytes(model[roff : roff + rlen])
        assert os.pread(fd, 10, len(model) + 5) == b""
    assert path.read_bytes() == model


def test_truncate_up_and_down(env: Env) -> None:
    path = env.d / "t"
    data = pattern(3 * BS + BS // 2, 3)
    path.write_bytes(data)
    os.truncate(path, 100_000)  # inside block 1
    assert path.read_bytes() == data[:100_000]
    os.truncate(path, 300_000)  # up: the cut-off bytes must not come back
    assert path.read_bytes() == data[:100_000] + bytes(200_000)
    os.truncate(path, 2 * BS)  # exactly at a block boundary
    assert path.read_bytes() == data[:100_000] + bytes(2 * BS - 100_000)
    os.truncate(path, 0)
    assert path.read_bytes() == b""
    assert os.stat(path).st_size == 0
    with opened(path, os.O_RDWR) as fd:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, BS + 10)  # while the data is still dirty in the cache
        assert os.pread(fd, 2 * BS, 0) == data[: BS + 10]
        os.ftruncate(fd, BS + 5000)
        os.pwrite(fd, b"Z", BS + 4999)
        assert os.pread(fd, 2 * BS, 0) == data[: BS + 10] + bytes(4989) + b"Z"
        os.fsync(fd)
        os.ftruncate(fd, 7)  # after the data was stored
        os.pwrite(fd, b"tail", 3 * BS)  # extend past a stale stored block
    expected = data[:7] + bytes(3 * BS - 7) + b"tail"
    assert path.read_bytes() == expected
    env.fs.remount()
    assert path.read_bytes() == expected
    assert os.stat(path).st_size == 3 * BS + 4


def test_o_trunc_and_rewrite(env: Env) -> None:
    path = env.d / "t"
    path.write_bytes(pattern(4 * BS, 8))
    with opened(path, os.O_RDWR) as fd:
        os.fsync(fd)
    with opened(path, os.O_WRONLY | os.O_TRUNC) as fd:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"short")
    assert path.read_bytes() == b"short"
    with opened(path, os.O_RDWR) as fd:  # extend: nothing of the old content comes back
        os.pwrite(fd, b"!", 3 * BS + 10)
    assert path.read_bytes() == b"short" + bytes(3 * BS + 5) + b"!"
    env.fs.remount()
    assert path.read_bytes() == b"short" + bytes(3 * BS + 5) + b"!"


def test_times_follow_changes(env: Env) -> None:
    d = env.d
    old = 1_000_000_000_000_000_000
    os.mkdir(d / "dir")
    (d / "f").write_bytes(b"x")
    for p in (d / "dir", d / "f", d):
        os.utime(p, ns=(old, old))

    def changed(path: Path, *, m: bool = True) -> None:
        st = os.stat(path)
        assert st.st_ctime_ns > old, f"{path.name}: ctime did not move"
        if m:
            assert st.st_mtime_ns > old, f"{path.name}: mtime did not move"
        os.utime(path, ns=(old, old))

    with open(d / "f", "r+b") as f:
        f.write(b"y")
    changed(d / "f")
    os.truncate(d / "f", 10)
    changed(d / "f")
    (d / "dir" / "new").write_bytes(b"")
    changed(d / "dir")
    os.rename(d / "dir" / "new", d / "dir" / "renamed")
    changed(d / "dir")
    os.unlink(d / "dir" / "renamed")
    changed(d / "dir")
    os.link(d / "f", d / "f2")
    st = os.stat(d / "f")
    assert st.st_ctime_ns > old and st.st_mtime_ns == old  # link changes ctime only
    changed(d)
    os.chmod(d / "f", 0o600)
    st = os.stat(d / "f")
    assert st.st_ctime_ns > old and st.st_mtime_ns == old
    os.setxattr(d / "f", "user.t", b"1")
    assert os.stat(d / "f").st_mtime_ns == old


def test_readdir_while_the_directory_changes(env: Env) -> None:
    d = env.d
    stable = [f"stable-{i:05d}-{'x' * 40}" for i in range(1500)]
    doomed = [f"doomed-{i:05d}-{'y' * 40}" for i in range(400)]
    for name in stable + doomed:
        os.close(os.open(d / name, os.O_CREAT | os.O_WRONLY))
    seen: list[str] = []
    with os.scandir(d) as it:
        for n, entry in enumerate(it):
            seen.append(entry.name)
            if n in (100, 700, 1200):  # the listing is under way: change the directory
                for name in doomed[:130]:
                    if (d / name).exists():
                        os.unlink(d / name)
                doomed = doomed[130:]
                for i in range(150):
                    os.close(os.open(d / f"new-{n}-{i:04d}-{'z' * 40}", os.O_CREAT | os.O_WRONLY))
    duplicates = sorted({name for name in seen if seen.count(name) > 1})
    assert not duplicates, f"{len(duplicates)} entries reported twice, e.g. {duplicates[:5]}"
    missing = set(stable) - set(seen)
    assert not missing, f"{len(missing)} entries that existed all along were not reported, e.g. {sorted(missing)[:5]}"
    assert len(os.listdir(d)) == len(set(os.listdir(d))) == 1500 + 400 - 390 + 450


def test_huge_sparse_file(env: Env) -> None:
    path = env.d / "huge"
    with open(path, "wb") as f:
        f.truncate(1 << 40)
        f.seek((1 << 40) - 5)
        f.write(b"tail!")
    assert os.stat(path).st_size == 1 << 40
    with opened(path, os.O_RDONLY) as fd:
        assert os.pread(fd, 100, (1 << 40) - 5) == b"tail!"
        assert os.pread(fd, 10, (1 << 40) - 8) == b"\0\0\0tail!"
        for off in (0, 1 << 20, (1 << 39) + 12345, (1 << 40) - BS - 100):
            assert os.pread(fd, 4096, off) == bytes(4096)
    env.fs.remount()
    with opened(path, os.O_RDONLY) as fd:
        assert os.pread(fd, 100, (1 << 40) - 5) == b"tail!"
    assert os.stat(path).st_size == 1 << 40


def test_statfs(env: Env) -> None:
    st = os.statvfs(env.d)
    assert st.f_blocks > 0 and st.f_bsize > 0 and st.f_frsize > 0
    assert 0 < st.f_bavail <= st.f_blocks
    assert st.f_namemax == 255
    # the three pools are directories on one disk: its space is counted once, not three times
    disk = os.statvfs(env.fs.pools[0])
    want = disk.f_blocks * disk.f_frsize // env.fs.replicas
    assert abs(st.f_blocks * st.f_frsize - want) <= 4096 * 4, (st.f_blocks * st.f_frsize, want)
