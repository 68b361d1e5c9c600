"""What real users and programs do with a mount: other users, mmap, threads, sqlite, git,
signals, a small cache, deduplication and garbage collection."""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Repfs, is_mounted, opened, public_filesystem, run_repfs, wait_for

pytestmark = pytest.mark.timeout(120)

BS = 64 * 1024
MiB = 1 << 20


# --- another user -------------------------------------------------------------------------

# Runs as uid/gid 1000: each operation on ROOT, printed as {label: "ok" | errno name | value}.
AS_USER = r"""
import errno, json, os, sys
root = sys.argv[1]
p = lambda *a: os.path.join(root, *a)
def write(path, data=b"u", flags=os.O_WRONLY):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
ops = {
    "read root600": lambda: open(p("root600"), "rb").read(),
    "read root644": lambda: open(p("root644"), "rb").read().decode(),
    "write root644": lambda: write(p("root644")),
    "truncate root644": lambda: os.truncate(p("root644"), 0),
    "open-trunc root644": lambda: write(p("root644"), flags=os.O_WRONLY | os.O_TRUNC),
    "create in dir755": lambda: write(p("dir755", "new"), flags=os.O_CREAT | os.O_WRONLY),
    "mkdir in dir755": lambda: os.mkdir(p("dir755", "newdir")),
    "symlink in dir755": lambda: os.symlink("x", p("dir755", "newlink")),
    "unlink in dir755": lambda: os.unlink(p("dir755", "f")),
    "rename in dir755": lambda: os.rename(p("dir755", "f"), p("dir755", "g")),
    "create in dir777": lambda: write(p("dir777", "mine"), flags=os.O_CREAT | os.O_WRONLY),
    "mkdir in dir777": lambda: os.mkdir(p("dir777", "mydir")),
    "stat of mine": lambda: [os.stat(p("dir777", "mine")).st_uid, os.stat(p("dir777", "mine")).st_gid],
    "unlink in sticky (root's)": lambda: os.unlink(p("sticky", "rootfile")),
    "rename in sticky (root's)": lambda: os.rename(p("sticky", "rootfile"), p("sticky", "x")),
    "create in sticky": lambda: write(p("sticky", "mine"), flags=os.O_CREAT | os.O_WRONLY),
    "unlink in sticky (mine)": lambda: os.unlink(p("sticky", "mine")),
    "list dir700": lambda: os.listdir(p("dir700")),
    "stat in dir700": lambda: os.stat(p("dir700", "f")).st_size,
    "read in dir700": lambda: open(p("dir700", "f"), "rb").read().decode(),
    "write in dir700": lambda: write(p("dir700", "f")),
    "list dir711": lambda: os.listdir(p("dir711")),
    "read in dir711": lambda: open(p("dir711", "f"), "rb").read().decode(),
    "chmod root644": lambda: os.chmod(p("root644"), 0o666),
    "chmod mine600": lambda: os.chmod(p("mine600"), 0o644),
    "chown mine600 to root": lambda: os.chown(p("mine600"), 0, -1),
    "chgrp mine600 to a group not mine": lambda: os.chown(p("mine600"), -1, 0),
    "utime root644 explicit": lambda: os.utime(p("root644"), ns=(1, 1)),
    "utime root644 now": lambda: os.utime(p("root644")),
    "utime root666 now": lambda: os.utime(p("root666")),
    "utime root666 explicit": lambda: os.utime(p("root666"), ns=(1, 1)),
    "read group640": lambda: open(p("group640"), "rb").read().decode(),
    "write group640": lambda: write(p("group640")),
    "write setuid (mine)": lambda: write(p("setuid")),
    "mode of setuid": lambda: oct(os.stat(p("setuid")).st_mode),
    "setxattr root644": lambda: os.setxattr(p("root644"), "user.x", b"1"),
    "getxattr root600": lambda: os.getxattr(p("root600"), "user.k"),
    "getxattr root644": lambda: os.getxattr(p("root644"), "user.k").decode(),
    "setxattr mine600": lambda: os.setxattr(p("mine600"), "user.x", b"1"),
    "trusted xattr": lambda: os.setxattr(p("mine600"), "trusted.x", b"1"),
    "link to root600": lambda: os.link(p("root600"), p("dir777", "hard")),
    "mknod char device": lambda: os.mknod(p("dir777", "dev"), 0o20644, os.makedev(1, 3)),
    "access root600 R": lambda: os.access(p("root600"), os.R_OK),
    "access root644 W": lambda: os.access(p("root644"), os.W_OK),
    "exec noexec file": lambda: os.access(p("root644"), os.X_OK),
}
out = {}
for label, op in ops.items():
    try:
        res = op()
        out[label] = "ok" if res is None else res
    except OSError as exc:
        out[label] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(out))
"""


def prepare_tree(root: Path) -> None:
    (root / "root600").write_bytes(b"secret")
    (root / "root600").chmod(0o600)
    os.setxattr(root / "root600", "user.k", b"v")
    (root / "root644").write_bytes(b"public")
    os.setxattr(root / "root644", "user.k", b"v")
    (root / "root666").write_bytes(b"open")
    (root / "root666").chmod(0o666)
    for name, mode in (("dir755", 0o755), ("dir777", 0o777), ("sticky", 0o1777), ("dir700", 0o700), ("dir711", 0o711)):
        (root / name).mkdir()
        (root / name).chmod(mode)
        (root / name / "f").write_bytes(b"inside")
    (root / "sticky" / "rootfile").write_bytes(b"r")
    (root / "sticky" / "rootfile").chmod(0o666)
    (root / "mine600").write_bytes(b"m")
    (root / "mine600").chmod(0o600)
    os.chown(root / "mine600", 1000, 1000)
    (root / "group640").write_bytes(b"group")
    (root / "group640").chmod(0o640)
    os.chown(root / "group640", 0, 1000)
    (root / "setuid").write_bytes(b"s")
    os.chown(root / "setuid", 1000, 1000)
    (root / "setuid").chmod(0o4755)


def as_user(root: Path) -> dict[str, object]:
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")  # one that uid 1000 may run
    if python is None:
        pytest.fail("no system python3 for the other user")
    res = subprocess.run(
        [python, "-I", "-c", AS_USER, str(root)],
        user=1000, group=1000, extra_groups=[], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result: dict[str, object] = json.loads(res.stdout)
    return result


@pytest.fixture
def public_repfs(request: pytest.FixtureRequest) -> Iterator[Repfs]:
    with public_filesystem(request.node) as fs:
        yield fs


def both_as_user(fs: Repfs) -> tuple[dict[str, object], dict[str, object]]:
    mine = fs.mnt / "perm"
    ref = fs.base.parent / "ref"
    for root in (mine, ref):
        root.mkdir()
        root.chmod(0o755)
        prepare_tree(root)  # as root: the kernel now holds these names in its dentry cache
    return as_user(mine), as_user(ref)


def test_permissions_of_another_user_match_the_local_disk(public_repfs: Repfs) -> None:
    got, want = both_as_user(public_repfs)
    differ = {k: (got[k], want[k]) for k in want if got.get(k) != want[k]}
    assert not differ, "repfs vs local disk:\n" + "\n".join(f"  {k}: {a} vs {b}" for k, (a, b) in differ.items())


# --- programs -------------------------------------------------------------------------------


def test_mmap_reads_and_writes(repfs: Repfs) -> None:
    path = repfs.mnt / "mapped"
    data = bytearray(random.Random(7).randbytes(3 * BS + 100))
    path.write_bytes(data)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        assert m[:] == data
        m[BS - 10 : BS + 10] = b"M" * 20  # across a block boundary
        data[BS - 10 : BS + 10] = b"M" * 20
        m[-5:] = b"tail!"
        data[-5:] = b"tail!"
        m.flush()
    assert path.read_bytes() == data
    repfs.remount()
    assert path.read_bytes() == data
    with open(path, "rb") as ro, mmap.mmap(ro.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[BS - 12 : BS + 12] == bytes(data[BS - 12 : BS + 12])


def test_concurrent_writers_and_readers(repfs: Repfs) -> None:
    region = 3 * BS + 777
    shared = repfs.mnt / "shared"
    stable = random.Random(8).randbytes(5 * BS)
    (repfs.mnt / "stable").write_bytes(stable)
    errors: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        return run

    def writer(i: int) -> Callable[[], None]:
        def run() -> None:
            data = random.Random(i).randbytes(region)
            with opened(shared, os.O_WRONLY | os.O_CREAT) as fd:
                for off in range(0, region, 7001):
                    os.pwrite(fd, data[off : off + 7001], i * region + off)
            own = repfs.mnt / f"own-{i}"
            own.write_bytes(data)
            assert own.read_bytes() == data

        return run

    def reader() -> None:
        for _ in range(20):
            assert (repfs.mnt / "stable").read_bytes() == stable

    threads = [threading.Thread(target=guard(writer(i))) for i in range(8)]
    threads += [threading.Thread(target=guard(reader)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors[:3]
    expected = b"".join(random.Random(i).randbytes(region) for i in range(8))
    assert shared.read_bytes() == expected
    repfs.remount()
    assert shared.read_bytes() == expected
    for i in range(8):
        assert (repfs.mnt / f"own-{i}").read_bytes() == random.Random(i).randbytes(region)


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_database(repfs: Repfs, journal: str) -> None:
    db = repfs.mnt / "app.db"
    con = sqlite3.connect(db)
    try:
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
        with con:
            con.executemany("INSERT INTO t (payload) VALUES (?)", [(os.urandom(200),) for _ in range(3000)])
        with con:
            con.execute("DELETE FROM t WHERE id % 3 = 0")
            con.execute("UPDATE t SET payload = zeroblob(500) WHERE id % 5 = 0")
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        digest = hashlib.sha256(b"".join(r[0] for r in con.execute("SELECT payload FROM t ORDER BY id"))).hexdigest()
    finally:
        con.close()
    repfs.remount()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (2000,)
        rows = b"".join(r[0] for r in con.execute("SELECT payload FROM t ORDER BY id"))
        assert hashlib.sha256(rows).hexdigest() == digest
    finally:
        con.close()


def test_git_repository(repfs: Repfs) -> None:
    repo = repfs.mnt / "repo"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repfs.base)}  # fmt: skip

    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr}"
        return res.stdout

    repo.mkdir()
    git("init", "-q")
    rng = random.Random(9)
    for i in range(150):
        sub = repo / f"d{i % 7}"
        sub.mkdir(exist_ok=True)
        (sub / f"file{i}.txt").write_text(f"line {i}\n" * rng.randint(1, 500))
    (repo / "run.sh").write_text("#!/bin/sh\necho ran from repfs\n")
    (repo / "run.sh").chmod(0o755)
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    (repo / "d1" / "file1.txt").write_text("changed\n")
    git("commit", "-q", "-am", "second")
    git("gc", "-q")
    repfs.remount()
    git("fsck", "--full", "--strict")
    assert git("status", "--porcelain") == ""
    assert len(git("log", "--oneline").splitlines()) == 2
    res = subprocess.run([str(repo / "run.sh")], capture_output=True, text=True, timeout=30)
    assert res.stdout == "ran from repfs\n"


# --- the daemon -----------------------------------------------------------------------------


def test_sigterm_unmounts_cleanly(repfs: Repfs) -> None:
    data = os.urandom(3 * BS + 1)
    (repfs.mnt / "f").write_bytes(data)  # dirty at the signal
    assert repfs.proc is not None
    proc = repfs.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    repfs.proc = None
    Repfs.live.discard(repfs)
    assert wait_for(lambda: not is_mounted(repfs.mnt), timeout=10)
    dirty = repfs.fs_dir / "cache" / "dirty"
    assert not any(dirty.iterdir()), "the daemon stopped with blocks not stored"
    repfs.mount()
    assert (repfs.mnt / "f").read_bytes() == data


def test_umount_of_a_busy_mount_is_refused_and_harmless(repfs: Repfs) -> None:
    (repfs.mnt / "f").write_bytes(b"busy")
    with open(repfs.mnt / "f", "rb") as f:
        res = run_repfs("umount", str(repfs.mnt))
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert repfs.alive and is_mounted(repfs.mnt)
        assert f.read() == b"busy"
    (repfs.mnt / "g").write_bytes(b"still works")
    repfs.remount()
    assert (repfs.mnt / "g").read_bytes() == b"still works"


def test_small_cache_many_blocks(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    fs.mount("--cache-size", "2M", "--max-dirty", "512K")  # the last value of an option wins
    rng = random.Random(10)
    digests = {}
    with open(fs.mnt / "a", "wb") as a, open(fs.mnt / "b", "wb") as b:
        ha, hb = hashlib.sha256(), hashlib.sha256()
        for _ in range(40):  # two files written in turns, 10 MiB each, through a 2 MiB cache
            for f, h in ((a, ha), (b, hb)):
                chunk = rng.randbytes(256 * 1024 + 13)
                f.write(chunk)
                h.update(chunk)
        digests = {"a": ha.hexdigest(), "b": hb.hexdigest()}
    for name, digest in digests.items():  # read back while mounted: evicted blocks come from the pools
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest
    cache_bytes = sum(p.stat().st_size for p in (fs.fs_dir / "cache").rglob("*") if p.is_file())
    assert cache_bytes <= 3 * MiB, f"the cache holds {cache_bytes} bytes, more than its 2 MiB"
    with open(fs.mnt / "a", "r+b") as rw:  # random updates in a file much larger than the cache
        for _ in range(50):
            rw.seek(rng.randrange(0, 10 * MiB))
            rw.write(b"X" * 100)
    data = bytearray((fs.mnt / "a").read_bytes())
    fs.remount()
    assert (fs.mnt / "a").read_bytes() == data
    assert hashlib.sha256((fs.mnt / "b").read_bytes()).hexdigest() == digests["b"]


# --- deduplication and garbage ----------------------------------------------------------------


@pytest.mark.standalone
def test_identical_blocks_are_stored_once_and_freed_with_the_last_user(repfs: Repfs) -> None:
    data = random.Random(11).randbytes(4 * BS)
    (repfs.mnt / "a").write_bytes(data)
    with opened(repfs.mnt / "a", os.O_RDONLY) as fd:
        os.fsync(fd)
    keys = repfs.all_keys()
    assert len(keys) == 4
    shutil.copyfile(repfs.mnt / "a", repfs.mnt / "b")
    with open(repfs.mnt / "c", "wb") as f:  # the same blocks at another place of a bigger file
        f.write(b"\0" * BS + data)
    repfs.remount()
    assert repfs.all_keys() == keys, "identical blocks were stored again"
    os.unlink(repfs.mnt / "a")
    os.unlink(repfs.mnt / "c")
    repfs.remount()  # unmount collects garbage: the blocks "b" still uses must stay
    assert repfs.all_keys() == keys
    assert (repfs.mnt / "b").read_bytes() == data
    os.unlink(repfs.mnt / "b")
    assert wait_for(lambda: not repfs.all_keys(), timeout=30), f"{len(repfs.all_keys())} objects left"


@pytest.mark.standalone
def test_overwritten_and_truncated_data_is_collected(repfs: Repfs) -> None:
    rng = random.Random(12)
    with open(repfs.mnt / "f", "wb") as f:
        f.write(rng.randbytes(6 * BS))
    repfs.remount()
    old = repfs.all_keys()
    with open(repfs.mnt / "f", "r+b") as f:  # new content for blocks 0-2, in place
        f.write(rng.randbytes(3 * BS))
        f.flush()
        os.fsync(f.fileno())
    os.truncate(repfs.mnt / "f", 4 * BS)  # drops blocks 4 and 5
    assert wait_for(lambda: len(repfs.all_keys()) == 4, timeout=30), f"{len(repfs.all_keys())} objects, 4 expected"
    assert len(repfs.all_keys() & old) == 1
    for pool in repfs.pools:  # and every live block has its two copies, no more
        assert all(k in repfs.all_keys() for k in repfs.pool_keys(pool))
    assert sum(len(repfs.pool_keys(p)) for p in repfs.pools) == 8


@pytest.mark.standalone
def test_file_deleted_while_open_is_freed_after_a_crash(repfs: Repfs) -> None:
    data = random.Random(13).randbytes(3 * BS)
    fd = os.open(repfs.mnt / "ghost", os.O_CREAT | os.O_RDWR)
    os.write(fd, data)
    os.fsync(fd)
    assert len(repfs.all_keys()) == 3
    os.unlink(repfs.mnt / "ghost")
    repfs.kill9()
    with contextlib.suppress(OSError):
        os.close(fd)
    repfs.mount()
    assert os.listdir(repfs.mnt) == []
    assert wait_for(lambda: not repfs.all_keys(), timeout=30), f"{len(repfs.all_keys())} objects of a deleted file"


@pytest.mark.standalone
def test_rename_over_an_open_file(repfs: Repfs) -> None:
    rng = random.Random(14)
    old, new = rng.randbytes(2 * BS), rng.randbytes(2 * BS + 1)
    (repfs.mnt / "target").write_bytes(old)
    (repfs.mnt / "incoming").write_bytes(new)
    with open(repfs.mnt / "target", "rb") as f:
        os.rename(repfs.mnt / "incoming", repfs.mnt / "target")
        assert f.read() == old  # the open file is the replaced one
    assert (repfs.mnt / "target").read_bytes() == new
    repfs.remount()
    assert (repfs.mnt / "target").read_bytes() == new
    assert wait_for(lambda: len(repfs.all_keys()) == 3, timeout=30), f"{len(repfs.all_keys())} objects, 3 expected"
