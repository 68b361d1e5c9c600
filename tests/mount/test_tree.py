"""A real tree copied with rsync survives an unmount and a mount: contents, modes, times."""

from __future__ import annotations

import os
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import Repfs

# ~2,000 files and directories, ~35 MB: some of the standard library, not all of it.
PACKAGES = ("json", "email", "asyncio", "unittest", "importlib", "xml", "encodings", "lib2to3", "distutils")


def attrs(st: os.stat_result) -> tuple[int, int, int, int, int]:
    size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size  # a directory's size is the filesystem's business
    return st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns


@pytest.mark.timeout(180)
def test_rsync_tree_survives_remount(repfs: Repfs, tmp_path: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    src = tmp_path / "src"
    src.mkdir()
    # a private copy first: the interpreter may write .pyc files into the stdlib meanwhile
    packages = [str(stdlib / p) for p in PACKAGES if (stdlib / p).is_dir()]
    subprocess.run(["rsync", "-a", *packages, f"{src}/"], check=True)
    for i, p in enumerate(sorted(src.rglob("*.py"))[:40]):  # some unusual modes and times too
        p.chmod([0o600, 0o640, 0o755, 0o444][i % 4])
        os.utime(p, ns=(1_000_000_000 + i, 1_500_000_000_123_456_789 + i * 1_000_001))
    nfiles = sum(len(files) for _, _, files in os.walk(src))
    assert nfiles > 1500

    dst = repfs.mnt / "tree"
    subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True, timeout=150)
    repfs.remount()

    res = subprocess.run(["diff", "-r", "--no-dereference", str(src), str(dst)], capture_output=True, text=True)
    assert res.returncode == 0, f"diff -r found differences:\n{res.stdout[:3000]}{res.stderr[:1000]}"
    # rsync itself finds nothing to do: every size, time, mode, owner is the same
    res = subprocess.run(
        ["rsync", "-ai", "--dry-run", f"{src}/", f"{dst}/"], capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == "", f"rsync would transfer again:\n{res.stdout[:3000]}"

    compared = 0
    for dirpath, dirs, files in os.walk(src):
        for name in [*dirs, *files[::7]]:  # every directory, a sample of the files
            a = Path(dirpath) / name
            b = dst / a.relative_to(src)
            sa, sb = os.lstat(a), os.lstat(b)
            assert attrs(sa) == attrs(sb), (a.relative_to(src), attrs(sa), attrs(sb))
            if stat.S_ISDIR(sa.st_mode):
                assert sorted(os.listdir(a)) == sorted(os.listdir(b)), a.relative_to(src)
            compared += 1
    assert compared > 300
    assert os.stat(dst).st_nlink >= 2
