"""Losing the mount host: everything fsync'd comes back from the pools alone with
`repfs recover`, and only one host mounts a filesystem at a time."""

from __future__ import annotations

import os
import random
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.backend.keys import parse_journal_key
from tests.helpers import Repfs, run_repfs

pytestmark = pytest.mark.timeout(180)

Factory = Callable[..., Repfs]


def build_tree(root: Path) -> None:
    """Files, modes, owners, times, xattrs, hard and symbolic links, all fsync'd."""
    rng = random.Random(11)
    (root / "docs" / "deep").mkdir(parents=True)
    for i in range(12):
        path = root / "docs" / f"f{i}"
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.choice([0, 10, 70_000, 200_000])))
            f.flush()
            os.fsync(f.fileno())
    (root / "docs" / "f1").chmod(0o640)
    os.chown(root / "docs" / "f2", 1234, 5678)
    os.utime(root / "docs" / "f3", ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    os.setxattr(root / "docs" / "f4", "user.tag", b"blue")
    os.link(root / "docs" / "f5", root / "docs" / "deep" / "hard")
    os.symlink("../f6", root / "docs" / "deep" / "soft")
    os.mkfifo(root / "fifo")
    (root / "empty-dir").mkdir(mode=0o700)
    (root / "docs" / "gone").write_bytes(b"deleted before the crash")
    os.unlink(root / "docs" / "gone")
    os.rename(root / "docs" / "f7", root / "docs" / "deep" / "moved")
    for d in (root, root / "docs", root / "docs" / "deep"):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def snapshot_tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        content: object = None
        if stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        xattrs = {n: os.getxattr(path, n) for n in os.listxattr(path)} if not stat.S_ISLNK(st.st_mode) else {}
        nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, nlink, content, xattrs)
    return out


def lose_the_host(fs: Repfs) -> None:
    """kill -9, then the local metadata and cache are gone (only repfs.toml is left)."""
    fs.kill9()
    shutil.rmtree(fs.fs_dir / "meta")
    shutil.rmtree(fs.fs_dir / "cache", ignore_errors=True)


def recover(fs: Repfs, *extra: str) -> str:
    res = run_repfs("recover", str(fs.fs_dir), "--key-file", str(fs.key), *extra, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "recovered" in res.stdout
    return res.stdout


def test_everything_fsynced_survives_the_loss_of_the_host(repfs: Repfs) -> None:
    build_tree(repfs.mnt)
    want = snapshot_tree(repfs.mnt)
    hard = os.stat(repfs.mnt / "docs" / "f5").st_ino
    assert os.stat(repfs.mnt / "docs" / "deep" / "hard").st_ino == hard
    lose_the_host(repfs)
    out = recover(repfs)
    assert "up to change" in out
    res = run_repfs("recover", str(repfs.fs_dir), "--key-file", str(repfs.key))
    assert res.returncode == 5 and "--force" in res.stderr  # never over existing metadata by accident
    repfs.mount()
    assert snapshot_tree(repfs.mnt) == want
    assert os.stat(repfs.mnt / "docs" / "f5").st_ino == os.stat(repfs.mnt / "docs" / "deep" / "hard").st_ino
    (repfs.mnt / "after").write_bytes(b"the recovered filesystem takes writes")
    repfs.remount()
    assert (repfs.mnt / "after").read_bytes() == b"the recovered filesystem takes writes"


def test_recovery_with_a_pool_down_and_a_damaged_journal_copy(repfs: Repfs) -> None:
    build_tree(repfs.mnt)
    want = snapshot_tree(repfs.mnt)
    lose_the_host(repfs)
    away = repfs.pools[2].with_name("pool3-away")
    repfs.pools[2].rename(away)  # one of three pools is down during recovery
    # Segments are on `replicas` (2) pools: damage pool1's copy of the newest segment whose
    # other copy is on pool2, which is up, so recovery must read that other replica.
    segments = sorted(
        (p for p in (repfs.pools[0] / "journal").iterdir() if (repfs.pools[1] / "journal" / p.name).exists()),
        key=lambda p: parse_journal_key(f"journal/{p.name}"),
    )
    assert segments
    newest = segments[-1]
    newest.write_bytes(newest.read_bytes()[:-3] + b"xyz")
    out = recover(repfs)
    assert "gap" not in out
    repfs.expect_log(r"pool3|damaged")
    repfs.mount()
    assert snapshot_tree(repfs.mnt) == want
    repfs.unmount()
    away.rename(repfs.pools[2])


def test_a_second_host_cannot_mount_while_the_first_runs(repfs: Repfs, repfs_factory: Factory) -> None:
    (repfs.mnt / "x").write_bytes(b"x")
    other = repfs_factory("other", mkfs=False)  # a second host, with the pool configuration
    other.fs_dir.mkdir()
    shutil.copy(repfs.fs_dir / "repfs.toml", other.fs_dir / "repfs.toml")
    other.key.write_bytes(repfs.key.read_bytes())
    recover(other)
    res = run_repfs("mount", str(other.fs_dir), str(other.mnt), "--key-file", str(other.key))
    assert res.returncode != 0
    assert "is mounted by host" in res.stderr and "--take-over" in res.stderr, res.stderr
    assert repfs.alive and (repfs.mnt / "x").read_bytes() == b"x"
