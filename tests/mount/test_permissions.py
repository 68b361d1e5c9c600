"""Permissions the kernel enforces, POSIX ACLs, and the evaluator that must agree with them.

Callers are other uids: a forked child with setresuid/setresgid/setgroups (`run_as`), on
a mount with `-o allow_other` under a directory every user may reach. "What Linux does"
is the same operation on the local disk (ext4) or on tmpfs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import stat
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from repfs.errors import FsError
from repfs.fs import acl
from repfs.fs.access import Caller
from repfs.fs.core import AttrChange, Filesystem
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import Rig, rig
from tests.helpers import Errno, Repfs, check_logs, errno_name, public_dir, public_filesystem, register, run_as

__all__ = ["rig"]

pytestmark = pytest.mark.timeout(180)

A, B, C, D, E = 2001, 2002, 2003, 2004, 2005
G, H = 3001, 3002  # G: the group of every target (B is in it); H: a group ACLs name (C is in it)
CALLERS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "owner": (A, A, ()),
    "group": (B, B, (G,)),
    "named-group": (C, C, (H,)),
    "named-user": (D, D, ()),
    "other": (E, E, ()),
    "root": (0, 0, ()),
}


@pytest.fixture(scope="module")
def public() -> Iterator[Repfs]:
    with public_filesystem() as fs:
        yield fs


@pytest.fixture
def fs(public: Repfs, request: pytest.FixtureRequest) -> Iterator[Repfs]:
    if not public.alive:
        public.cleanup()
        public.mount("-o", "allow_other")
    register(request.node, public)
    mark = public.log_size()
    yield public
    assert public.alive, f"the daemon died during the test; log:\n{public.log_tail()}"
    check_logs(public, mark)


@pytest.fixture
def ref() -> Iterator[Path]:
    with public_dir() as path:
        yield path


def fresh(root: Path, name: str, mode: int = 0o755) -> Path:
    d = root / name
    d.mkdir()
    d.chmod(mode)
    return d


def as_(who: str, fn: Callable[[], object]) -> str:
    uid, gid, groups = CALLERS[who]
    res = run_as(uid, gid, fn, groups)
    return repr(res) if isinstance(res, Errno) else "ok"


def acl_value(mode: int, group_obj: int, named: tuple[tuple[int, int, int], ...]) -> bytes:
    """The xattr value of an ACL whose owner, mask and other entries are `mode`'s bits."""
    entries = [
        acl.Entry(acl.USER_OBJ, acl.UNDEFINED_ID, (mode >> 6) & 7),
        acl.Entry(acl.GROUP_OBJ, acl.UNDEFINED_ID, group_obj),
        acl.Entry(acl.OTHER, acl.UNDEFINED_ID, mode & 7),
        *(acl.Entry(t, q, p) for t, q, p in named),
    ]
    if named:
        entries.append(acl.Entry(acl.MASK, acl.UNDEFINED_ID, (mode >> 3) & 7))
    return acl.validate(entries).pack()


# --- the five holes -------------------------------------------------------------------


def test_revoked_search_permission_applies_at_once_to_cached_names(fs: Repfs, ref: Path) -> None:
    for root in (fs.mnt, ref):
        d = fresh(root, "revoke")
        os.chown(d, A, A)
        (d / "f").write_bytes(b"data")
        os.chown(d / "f", A, A)
        (d / "f").chmod(0o666)
        assert as_("other", (d / "f").read_bytes) == "ok"  # the kernel now caches the name
        as_("owner", functools.partial(os.chmod, d, 0o644))
        tries = {
            "open": lambda d=d: open(d / "f", "rb").close(),
            "truncate": lambda d=d: os.truncate(d / "f", 0),
            "chmod": lambda d=d: os.chmod(d / "f", 0o600),
            "chown": lambda d=d: os.chown(d / "f", E, -1),
            "link": lambda d=d: os.link(d / "f", d.parent / "stolen"),
        }
        got = {op: as_("other", fn) for op, fn in tries.items()}
        assert got == dict.fromkeys(tries, "EACCES"), f"{root}: {got}"
        assert (d / "f").read_bytes() == b"data"


def test_a_fifo_mode_is_enforced(fs: Repfs) -> None:
    fifo = fs.mnt / "fifo600"
    os.mkfifo(fifo, 0o600)
    os.chown(fifo, 65534, 65534)
    got = run_as(65533, 65533, lambda: os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK)))
    assert got == errno.EACCES
    assert run_as(65534, 65534, lambda: os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))) is None


def test_non_owner_chown_to_the_current_owner_is_refused(fs: Repfs, ref: Path) -> None:
    for root in (fs.mnt, ref):
        f = root / "noop-chown"
        f.write_bytes(b"x")
        f.chmod(0o666)
        os.chown(f, A, G)
        assert as_("other", functools.partial(os.chown, f, A, G)) == "EPERM"
        assert as_("other", functools.partial(os.chown, f, A, -1)) == "EPERM"
        assert as_("group", functools.partial(os.chown, f, -1, G)) == "EPERM"
        assert as_("owner", functools.partial(os.chown, f, A, G)) == "ok"


def test_explicit_times_need_the_owner(fs: Repfs, ref: Path) -> None:
    results = []
    for root in (fs.mnt, ref):
        writable, readonly = root / "times-rw", root / "times-ro"
        for f, mode in ((writable, 0o666), (readonly, 0o644)):
            f.write_bytes(b"x")
            os.chown(f, A, A)
            f.chmod(mode)
        before = os.stat(writable).st_mtime_ns
        got = {
            "explicit, may write": as_("other", functools.partial(os.utime, writable, ns=(10**9, 10**9))),
            "explicit, may not write": as_("other", functools.partial(os.utime, readonly, ns=(10**9, 10**9))),
            "now, may write": as_("other", functools.partial(os.utime, writable)),
            "now, may not write": as_("other", functools.partial(os.utime, readonly)),
            "explicit, owner": as_("owner", functools.partial(os.utime, readonly, ns=(10**9, 10**9))),
        }
        results.append(got)
        assert os.stat(writable).st_mtime_ns >= before  # the refused explicit time was not applied
    assert (
        results[0]
        == results[1]
        == {
            "explicit, may write": "EPERM",
            "explicit, may not write": "EPERM",
            "now, may write": "ok",
            "now, may not write": "EACCES",
            "explicit, owner": "ok",
        }
    )


def test_a_non_owner_writes_a_setuid_file_and_clears_the_bits(fs: Repfs, ref: Path) -> None:
    """S_ISUID goes; S_ISGID when the group may execute or the writer is not in the group
    (Linux 6.x; the local disk of this machine is the reference); root's writes keep both."""
    cases = [(0o4777, "other"), (0o2777, "other"), (0o6777, "other"), (0o2767, "other"), (0o2767, "group")]
    cases += [(0o6777, "root"), (0o4755, "owner")]
    results = []
    for root in (fs.mnt, ref):
        got = {}
        for mode, writer in cases:
            f = root / f"suid-{mode:o}-{writer}"
            f.write_bytes(b"orig")
            os.chown(f, A, G)
            f.chmod(mode)

            def append(f: Path = f) -> None:
                with open(f, "ab") as out:
                    out.write(b"+more")

            got[f"{mode:o} by {writer}"] = (as_(writer, append), oct(stat.S_IMODE(os.stat(f).st_mode)))
            assert f.read_bytes() == b"orig+more"
        results.append(got)
    assert results[0] == results[1]
    assert results[0]["4777 by other"] == ("ok", "0o777")
    assert results[0]["2767 by other"] == ("ok", "0o767")
    assert results[0]["2767 by group"] == ("ok", "0o2767")  # in the group, no group exec: setgid stays
    assert results[0]["6777 by root"] == ("ok", "0o6777")


# --- the differential table: mount, local disk and the evaluator agree --------------------


@dataclass(frozen=True)
class Target:
    kind: str  # "file" or "dir"
    mode: int
    group_obj: int = -1  # the ACL's owning-group entry; -1: no ACL
    named: tuple[tuple[int, int, int], ...] = ()

    @property
    def acl(self) -> bytes | None:
        return acl_value(self.mode, self.group_obj, self.named) if self.group_obj >= 0 else None


TARGETS = {
    "f600": Target("file", 0o600),
    "f640": Target("file", 0o640),
    "f644": Target("file", 0o644),
    "f666": Target("file", 0o666),
    "acl-user": Target("file", 0o660, 4, ((acl.USER, D, 6),)),
    "acl-group": Target("file", 0o660, 4, ((acl.GROUP, H, 6),)),
    "acl-mask0": Target("file", 0o604, 4, ((acl.USER, D, 6),)),  # empty mask: Linux skips the ACL
    "acl-deny": Target("file", 0o646, 4, ((acl.USER, D, 0),)),  # a named entry beats "other"
    "acl-mask-r": Target("file", 0o640, 6, ((acl.USER, D, 6), (acl.GROUP, H, 6))),
    "d755": Target("dir", 0o755),
    "d770": Target("dir", 0o770),
    "d700": Target("dir", 0o700),
    "d711": Target("dir", 0o711),
    "d1777": Target("dir", 0o1777),
    "dacl": Target("dir", 0o770, 5, ((acl.USER, D, 7), (acl.GROUP, H, 5))),
}
PLAIN_ACL = acl_value(0o640, 4, ())


@dataclass(frozen=True)
class Op:
    """One operation, as a program on a mount does it and as a caller of the core does."""

    mount: Callable[[Path, Path], object]  # (target path, a directory everyone may write)
    core: Callable[[Filesystem, Caller, int, int], Awaitable[object]]  # (fs, caller, target ino, that dir's ino)


def _open(flags: int) -> Callable[[Path, Path], None]:
    return lambda p, pub: os.close(os.open(p, flags, 0o644))


async def _core_open(fs: Filesystem, caller: Caller, ino: int, flags: int) -> None:
    fs.release(await fs.open(caller, ino, flags))


async def _setattr(fs: Filesystem, caller: Caller, ino: int, ch: AttrChange) -> None:
    await fs.setattr(caller, ino, ch)


async def _done(_: object = None) -> None:
    return None


def _sync(fn: Callable[[], object]) -> Awaitable[None]:
    fn()
    return _done()


FILE_OPS: dict[str, Op] = {
    "read": Op(_open(os.O_RDONLY), lambda fs, c, i, pub: _core_open(fs, c, i, os.O_RDONLY)),
    "write": Op(_open(os.O_WRONLY), lambda fs, c, i, pub: _core_open(fs, c, i, os.O_WRONLY)),
    "truncate": Op(lambda p, pub: os.truncate(p, 1), lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(size=1))),
    "chmod": Op(lambda p, pub: os.chmod(p, 0o640), lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(mode=0o640))),
    "chown-same": Op(
        lambda p, pub: os.chown(p, A, G), lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(uid=A, gid=G))
    ),
    "chgrp-own": Op(
        lambda p, pub: os.chown(p, -1, os.getgid()),
        lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(gid=c.gid)),
    ),
    "utime-explicit": Op(
        lambda p, pub: os.utime(p, ns=(10**9, 10**9)),
        lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(atime_ns=10**9, mtime_ns=10**9)),
    ),
    "utime-now": Op(
        lambda p, pub: os.utime(p),
        lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(atime_ns=1, mtime_ns=1, times_now=True)),
    ),
    "setxattr": Op(
        lambda p, pub: os.setxattr(p, "user.new", b"1"),
        lambda fs, c, i, pub: _sync(lambda: fs.setxattr(c, i, b"user.new", b"1")),
    ),
    "getxattr": Op(
        lambda p, pub: os.getxattr(p, "user.k"), lambda fs, c, i, pub: _sync(lambda: fs.getxattr(c, i, b"user.k"))
    ),
    "setfacl": Op(
        lambda p, pub: os.setxattr(p, "system.posix_acl_access", PLAIN_ACL),
        lambda fs, c, i, pub: _sync(lambda: fs.setxattr(c, i, acl.ACCESS, PLAIN_ACL)),
    ),
    "link": Op(
        lambda p, pub: os.link(p, pub / f"link-{os.getuid()}-{p.parent.name}"),
        lambda fs, c, i, pub: _sync(lambda: fs.link(c, i, pub, f"link-{c.uid}-{i}".encode())),
    ),
}

DIR_OPS: dict[str, Op] = {
    "list": Op(lambda p, pub: os.listdir(p), lambda fs, c, i, pub: _sync(lambda: fs.opendir(c, i))),
    "stat-v": Op(lambda p, pub: os.stat(p / "v"), lambda fs, c, i, pub: _sync(lambda: fs.lookup(c, i, b"v"))),
    "create": Op(
        lambda p, pub: os.close(os.open(p / "new", os.O_CREAT | os.O_WRONLY, 0o644)),
        lambda fs, c, i, pub: _sync(lambda: fs.release(fs.create(c, i, b"new", 0o644, os.O_WRONLY)[0])),
    ),
    "mkdir": Op(lambda p, pub: os.mkdir(p / "nd"), lambda fs, c, i, pub: _sync(lambda: fs.mkdir(c, i, b"nd", 0o755))),
    "unlink-v": Op(lambda p, pub: os.unlink(p / "v"), lambda fs, c, i, pub: _sync(lambda: fs.unlink(c, i, b"v"))),
    "rename-v": Op(
        lambda p, pub: os.rename(p / "v", p / "w"),
        lambda fs, c, i, pub: _sync(lambda: fs.rename(c, i, b"v", i, b"w", 0)),
    ),
    "chmod": Op(lambda p, pub: os.chmod(p, 0o755), lambda fs, c, i, pub: _setattr(fs, c, i, AttrChange(mode=0o755))),
    "setxattr": Op(
        lambda p, pub: os.setxattr(p, "user.new", b"1"),
        lambda fs, c, i, pub: _sync(lambda: fs.setxattr(c, i, b"user.new", b"1")),
    ),
}


def rows() -> list[tuple[str, str, str]]:
    out = []
    for tname, target in TARGETS.items():
        ops = FILE_OPS if target.kind == "file" else DIR_OPS
        for op in ops:
            for who in CALLERS:
                out.append((tname, op, who))
    return out


def build_on_disk(root: Path) -> None:
    """The table's tree on a mount or a local directory: one directory per row."""
    fresh(root, "pub", 0o777)
    rows_dir = fresh(root, "rows")
    for tname, op, who in rows():
        target = TARGETS[tname]
        row = fresh(rows_dir, f"{tname}.{op}.{who}")
        t = row / "t"
        if target.kind == "file":
            t.write_bytes(b"data")
        else:
            t.mkdir()
            (t / "v").write_bytes(b"victim")
            os.chown(t / "v", A, G)
        os.chown(t, A, G)
        os.chmod(t, target.mode)
        if target.kind == "file":
            os.setxattr(t, "user.k", b"v")
        if target.acl is not None:
            os.setxattr(t, "system.posix_acl_access", target.acl)
        assert stat.S_IMODE(os.stat(t).st_mode) == target.mode


def run_on_disk(root: Path) -> dict[tuple[str, str, str], str]:
    pub = root / "pub"
    by_caller: dict[str, list[tuple[str, str, str]]] = {}
    for row in rows():
        by_caller.setdefault(row[2], []).append(row)
    out: dict[tuple[str, str, str], str] = {}
    for who, mine in by_caller.items():

        def run_all(mine: list[tuple[str, str, str]] = mine) -> list[str]:
            got = []
            for tname, op, _ in mine:
                ops = FILE_OPS if TARGETS[tname].kind == "file" else DIR_OPS
                try:
                    ops[op].mount(root / "rows" / f"{tname}.{op}.{_}" / "t", pub)
                    got.append("ok")
                except OSError as exc:
                    got.append(errno_name(exc.errno))
            return got

        uid, gid, groups = CALLERS[who]
        results = run_as(uid, gid, run_all, groups)
        assert isinstance(results, list), results
        out.update(zip(mine, results, strict=True))
    return out


async def run_in_core(r: Rig) -> dict[tuple[str, str, str], str]:
    """The same tree and operations through the filesystem core, whose callers the kernel
    has not checked: every answer comes from repfs/fs/access.py."""
    fs = r.fs
    root = Caller(0, 0, umask=0)

    def mkdir(parent: int, name: str, mode: int) -> int:
        return fs.mkdir(root, parent, name.encode(), mode).ino

    pub = mkdir(ROOT_INO, "pub", 0o777)
    rows_ino = mkdir(ROOT_INO, "rows", 0o755)
    made = []
    for tname, op, who in rows():
        target = TARGETS[tname]
        row = mkdir(rows_ino, f"{tname}.{op}.{who}", 0o755)
        if target.kind == "file":
            fh, inode = fs.create(root, row, b"t", 0o644, os.O_WRONLY)
            await fs.write(fh, 0, b"data")
            fs.release(fh)
            ino = inode.ino
        else:
            ino = mkdir(row, "t", 0o755)
            fh, v = fs.create(root, ino, b"v", 0o644, os.O_WRONLY)
            fs.release(fh)
            await fs.setattr(root, v.ino, AttrChange(uid=A, gid=G))
        await fs.setattr(root, ino, AttrChange(uid=A, gid=G))
        await fs.setattr(root, ino, AttrChange(mode=target.mode))
        if target.kind == "file":
            fs.setxattr(root, ino, b"user.k", b"v")
        if target.acl is not None:
            fs.setxattr(root, ino, acl.ACCESS, target.acl)
        assert stat.S_IMODE(fs.getattr(ino).mode) == target.mode
        made.append((tname, op, who))

    out = {}
    for tname, op, who in made:
        uid, gid, groups = CALLERS[who]
        caller = Caller(uid, gid, frozenset(groups))
        ops = FILE_OPS if TARGETS[tname].kind == "file" else DIR_OPS
        try:  # the path walk as the caller, then the operation
            ino = ROOT_INO
            for name in (b"rows", f"{tname}.{op}.{who}".encode(), b"t"):
                ino = fs.lookup(caller, ino, name).ino
            await ops[op].core(fs, caller, ino, fs.lookup(caller, ROOT_INO, b"pub").ino)
            out[(tname, op, who)] = "ok"
        except FsError as exc:
            out[(tname, op, who)] = errno_name(exc.errno)
    assert pub
    return out


def _differences(a: dict[tuple[str, str, str], str], b: dict[tuple[str, str, str], str]) -> list[str]:
    return [f"{'/'.join(k)}: {a[k]} vs {b.get(k)}" for k in a if a[k] != b.get(k)]


@pytest.mark.trio
async def test_mount_local_disk_and_evaluator_agree(fs: Repfs, ref: Path, rig: Rig) -> None:
    if (await trio.to_thread.run_sync(Path("/proc/sys/fs/protected_hardlinks").read_text)).strip() != "1":
        pytest.fail("the table assumes fs.protected_hardlinks = 1 (the Linux default), as the evaluator does")
    build_on_disk(fs.mnt)
    build_on_disk(ref)
    on_mount, on_disk = run_on_disk(fs.mnt), run_on_disk(ref)
    in_core = await run_in_core(rig)
    assert not _differences(on_disk, on_mount), "local disk vs mount:\n" + "\n".join(_differences(on_disk, on_mount))
    assert not _differences(on_mount, in_core), "mount vs evaluator:\n" + "\n".join(_differences(on_mount, in_core))
    answers = list(on_mount.values())
    assert min(answers.count("ok"), answers.count("EACCES"), answers.count("EPERM")) >= 20, set(answers)
    # the ACL rows are decided by the ACL, not by the mode bits alone
    assert on_mount[("acl-user", "read", "named-user")] == "ok"
    assert on_mount[("acl-deny", "read", "named-user")] == "EACCES"
    assert on_mount[("acl-mask0", "read", "named-user")] == "ok"  # as "other"
    assert on_mount[("acl-group", "write", "named-group")] == "ok"
    assert on_mount[("acl-mask-r", "write", "named-group")] == "EACCES"
    assert on_mount[("dacl", "create", "named-user")] == "ok"


# --- ACLs through the usual tools ---------------------------------------------------------


def getfacl(path: Path, *args: str) -> str:
    res = subprocess.run(["getfacl", "-p", *args, path.name], cwd=path.parent, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def setfacl(path: Path, *args: str) -> None:
    res = subprocess.run(["setfacl", *args, str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_setfacl_getfacl_round_trip_and_the_mask_follows_chmod(fs: Repfs) -> None:
    shm = Path("/dev/shm")
    results = []
    for root in (fs.mnt, shm):
        f = root / f"acl-rt-{os.getpid()}"
        try:
            f.write_bytes(b"x")
            f.chmod(0o640)
            setfacl(f, "-m", f"u:{D}:rw,g:{H}:r")
            first = getfacl(f)
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o660  # the mask is the group bits
            f.chmod(0o600)  # the mask goes to ---, the entries stay
            after_chmod = getfacl(f)
            raw = os.getxattr(f, "system.posix_acl_access")
            setfacl(f, "-b")
            cleared = getfacl(f), stat.S_IMODE(os.stat(f).st_mode)
            results.append((first, after_chmod, raw, cleared))
        finally:
            f.unlink(missing_ok=True)
    assert results[0] == results[1]
    assert "#effective:---" in results[0][1]


def test_a_named_user_entry_grants_and_revokes_at_once(fs: Repfs) -> None:
    d = fresh(fs.mnt, "grant")
    f = d / "f"
    f.write_bytes(b"secret")
    f.chmod(0o600)

    def read() -> bytes:
        return f.read_bytes()

    assert run_as(D, D, read) == errno.EACCES
    setfacl(f, "-m", f"u:{D}:r")
    assert run_as(D, D, read) == b"secret"  # the name is cached now, the ACL too
    setfacl(f, "-x", f"u:{D}")
    assert run_as(D, D, read) == errno.EACCES
    setfacl(d, "-m", f"u:{D}:---")  # and a path component the kernel has cached
    setfacl(f, "-m", f"u:{D}:r")
    assert run_as(D, D, read) == errno.EACCES
    setfacl(d, "-x", f"u:{D}")
    assert run_as(D, D, read) == b"secret"


def test_default_acls_are_inherited_as_on_tmpfs(fs: Repfs) -> None:
    shm = Path("/dev/shm")
    results = []
    for root in (fs.mnt, shm):
        d = root / f"inherit-{os.getpid()}"
        try:
            d.mkdir()
            setfacl(d, "-m", f"d:u:{D}:rwx,d:g:{H}:rx,d:o::-")

            def make(d: Path = d) -> None:
                os.close(os.open(d / "file", os.O_CREAT | os.O_WRONLY, 0o666))
                os.close(os.open(d / "file600", os.O_CREAT | os.O_WRONLY, 0o600))
                os.mkdir(d / "sub", 0o777)
                os.mkdir(d / "sub" / "deeper", 0o750)
                os.mkfifo(d / "fifo", 0o644)
                os.symlink("file", d / "link")

            assert run_as(0, 0, make, umask=0) is None  # umask 000: the kernel's masking changes nothing
            got = {}
            for name in ("file", "file600", "sub", "sub/deeper", "fifo"):
                got[name] = (getfacl(d / name), oct(os.stat(d / name).st_mode))
            got["link"] = (oct(os.lstat(d / "link").st_mode), "")
            results.append(got)
        finally:
            subprocess.run(["rm", "-rf", str(d)], check=False)
    assert results[0] == results[1]
    assert f"user:{D}:rwx" in results[0]["sub/deeper"][0] and "default:" in results[0]["sub/deeper"][0]


def test_unsupported_xattr_namespaces_answer_eopnotsupp(fs: Repfs) -> None:
    f = fs.mnt / "ns"
    f.write_bytes(b"x")
    for name in ("foo.bar", "system.nfs4_acl", "osx.x"):
        for op in (lambda n=name: os.setxattr(f, n, b"1"), lambda n=name: os.getxattr(f, n)):
            with pytest.raises(OSError) as exc:
                op()
            assert exc.value.errno == errno.EOPNOTSUPP, name
    os.setxattr(f, "user.ok", b"1")  # the supported namespaces still work afterwards
    os.setxattr(f, "trusted.ok", b"2")
    os.setxattr(f, "security.ok", b"3")
    assert {n for n in os.listxattr(f)} >= {"user.ok", "trusted.ok", "security.ok"}


def test_du_counts_data_not_holes(fs: Repfs) -> None:
    f = fs.mnt / "sparse"
    with open(f, "wb") as out:
        out.truncate(1 << 30)
    assert os.stat(f).st_blocks == 0
    with open(f, "r+b") as out:
        out.seek(5 << 20)
        out.write(b"x" * 1000)
        out.flush()
        os.fsync(out.fileno())
    # one 64 KiB block holds data: counted as the logical bytes of that block, not as 1 GiB
    assert os.stat(f).st_blocks * 512 == fs.block_bytes
    du = subprocess.run(["du", "-k", str(f)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) == fs.block_bytes // 1024
    (fs.mnt / "dense").write_bytes(b"y" * 100_000)
    assert os.stat(fs.mnt / "dense").st_blocks == (100_000 + 511) // 512


def test_acls_survive_remount_and_recover(repfs: Repfs) -> None:
    from tests.mount.test_recover import lose_the_host, recover

    d = repfs.mnt / "kept"
    d.mkdir()
    (d / "f").write_bytes(b"x")
    setfacl(d / "f", "-m", f"u:{D}:rw,g:{H}:r")
    setfacl(d, "-m", f"d:u:{D}:rx")
    want = getfacl(d, "-R")
    assert f"user:{D}:rw-" in want and f"default:user:{D}:r-x" in want
    repfs.remount()
    assert getfacl(d, "-R") == want
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # fsync of a directory: the journal is on the pools
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    lose_the_host(repfs)
    recover(repfs)
    repfs.mount()
    assert getfacl(d, "-R") == want


def test_fallocate_is_not_supported_and_glibc_falls_back(fs: Repfs) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    f = fs.mnt / "prealloc"
    with open(f, "wb") as out:
        for mode in (0, 1, 3):  # plain, FALLOC_FL_KEEP_SIZE, KEEP_SIZE|PUNCH_HOLE
            assert libc.fallocate(out.fileno(), mode, 0, 1 << 20) == -1
            assert ctypes.get_errno() == errno.EOPNOTSUPP
        os.posix_fallocate(out.fileno(), 0, 200_000)  # glibc writes zeros instead
    assert f.stat().st_size == 200_000 and f.read_bytes() == bytes(200_000)
