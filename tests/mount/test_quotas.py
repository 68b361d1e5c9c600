"""Quotas on a real mount: EDQUOT exactly at the hard limits with nothing changed by the
refused call, the soft limit's warning, and usage counted live that always equals the
defined unit computed from the tree (`find NS -mindepth 1 -printf '%i %s %y'`, each inode
once), after random operations of two accounts, after kill -9 and after recover."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Repfs, oserror, run_as, run_repfs, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(300)


def usage(sock: Path, name: str) -> dict[str, int]:
    res = admin(sock, "users", "show", name, "--json")
    assert res.returncode == 0, res.stderr
    used: dict[str, int] = json.loads(res.stdout)["usage"]
    return used


def from_tree(home: Path) -> dict[str, int]:
    """The defined unit, from the tree: bytes of regular files and symlinks, inodes, each once."""
    out = subprocess.run(["find", str(home), "-mindepth", "1", "-printf", "%i %s %y\n"], capture_output=True,
                         text=True, check=True, timeout=60).stdout  # fmt: skip
    seen: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        ino, size, kind = line.split()
        seen[ino] = (int(size), kind)
    return {"bytes": sum(size for size, kind in seen.values() if kind in ("f", "l")), "files": len(seen)}


def test_edquot_exactly_at_the_limits_and_nothing_changed(mounted: tuple[Repfs, Path], names: list[str]) -> None:
    fs, sock = mounted
    alice = names[0]
    add(sock, alice)
    a = ids(alice)
    home = fs.mnt / alice
    res = admin(sock, "users", "set", alice, "--quota", "100000", "--quota-files", "5", "--soft", "60000")
    assert res.returncode == 0, res.stderr
    f = home / "data"

    def fill() -> list[int | None]:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            first = oserror(lambda: os.write(fd, b"x" * 100_000))  # exactly the limit: fine
            second = oserror(lambda: os.pwrite(fd, b"y", 100_000))  # one byte more: refused
            grow = oserror(lambda: os.ftruncate(fd, 100_001))
        finally:
            os.close(fd)
        return [first, second, grow]

    assert run_as(*a, fill) == [None, errno.EDQUOT, errno.EDQUOT]
    assert f.stat().st_size == 100_000 and f.read_bytes() == b"x" * 100_000
    assert usage(sock, alice) == {"bytes": 100_000, "files": 1}
    assert wait_for(lambda: "past its soft limit" in fs.log_text(), 10)  # crossed at 60,000 on the way
    status = json.loads(admin(sock, "status", "--json").stdout)
    assert any(alice in a and "soft limit" in a for a in status["alerts"]), status["alerts"]
    # files: the folder itself is not counted; 4 more fit, the 6th inode does not
    for i in range(4):
        run_as(*a, (home / f"e{i}").touch)
    assert run_as(*a, lambda: oserror(lambda: (home / "one-more").touch())) == errno.EDQUOT
    assert run_as(*a, lambda: oserror(lambda: (home / "dir").mkdir())) == errno.EDQUOT
    assert run_as(*a, lambda: oserror(lambda: os.symlink("t", home / "link"))) == errno.EDQUOT
    assert sorted(p.name for p in home.iterdir()) == ["data", "e0", "e1", "e2", "e3"]
    assert usage(sock, alice) == {"bytes": 100_000, "files": 5} == from_tree(home)
    # freeing makes room; a hard link is the same inode, counted once
    run_as(*a, lambda: os.truncate(f, 10))
    run_as(*a, lambda: os.link(f, home / "again"))
    assert usage(sock, alice) == {"bytes": 10, "files": 5} == from_tree(home)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_usage_equals_the_tree_after_random_operations(
    seed: int, mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice, bob = names[0], names[1]
    for name in (alice, bob):
        if admin(sock, "users", "show", name).returncode != 0:
            add(sock, name)
    a, b = ids(alice), ids(bob)
    home = fs.mnt / alice
    team = home / "team"
    if not team.exists():
        run_as(*a, team.mkdir)
        assert admin(sock, "shares", "add", str(team), bob, "--role", "editor").returncode == 0
    rng = random.Random(seed)
    for _ in range(60):
        who, where = (a, home) if rng.random() < 0.6 else (b, team)
        run_as(*who, partial(_step, where, rng.random(), rng.randrange(1 << 20)))
    assert usage(sock, alice) == from_tree(home)
    assert usage(sock, bob) == from_tree(fs.mnt / bob)  # bob's files in alice's folder are alice's


def _step(folder: Path, r: float, size: int) -> None:
    """One random operation in `folder` (errors such as EEXIST or ENOENT are fine)."""
    names = sorted(p.name for p in folder.iterdir() if p.name != "team")
    pick = folder / (names[size % len(names)] if names else "none")
    new = folder / f"n{size % 50}"
    try:
        if r < 0.25:
            new.write_bytes(b"z" * (size % 70_000))
        elif r < 0.35:
            with pick.open("ab") as f:
                f.write(b"a" * (size % 5000))
        elif r < 0.45:
            os.truncate(pick, size % 100_000)
        elif r < 0.55:
            new.mkdir()
        elif r < 0.65:
            os.symlink("x" * (size % 200 + 1), new)
        elif r < 0.72:
            os.link(pick, new)
        elif r < 0.82:
            os.rename(pick, new)
        elif pick.is_dir() and not pick.is_symlink():
            pick.rmdir()
        else:
            pick.unlink()
    except OSError:
        pass


def test_counts_survive_kill9_and_recover_and_an_editors_file_is_the_owners(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice, bob = names[0], names[1]
    add(sock, alice)
    add(sock, bob)
    a, b = ids(alice), ids(bob)
    home = fs.mnt / alice
    run_as(*a, lambda: (home / "team").mkdir())
    assert admin(sock, "shares", "add", str(home / "team"), bob, "--role", "editor").returncode == 0
    run_as(*b, lambda: (home / "team" / "bobs").write_bytes(b"b" * 1000))
    assert usage(sock, alice) == {"bytes": 1000, "files": 2} and usage(sock, bob) == {"bytes": 0, "files": 0}
    # an unlinked file that is still open counts until it is freed
    fd = os.open(home / "team" / "bobs", os.O_RDONLY)
    run_as(*b, lambda: os.unlink(home / "team" / "bobs"))
    assert usage(sock, alice) == {"bytes": 1000, "files": 2}
    os.close(fd)
    Path("/proc/sys/vm/drop_caches").write_text("2\n")  # the kernel forgets the inode: it is freed
    assert wait_for(lambda: usage(sock, alice) == {"bytes": 0, "files": 1}, 10), usage(sock, alice)
    run_as(*a, lambda: (home / "keep").write_bytes(os.urandom(5000)))
    before = usage(sock, alice)
    assert before == from_tree(home) == {"bytes": 5000, "files": 2}

    def ingested() -> float:
        return float(json.loads(admin(sock, "info", str(home / "keep"), "--json").stdout)["ingested"])

    made = ingested()  # the ingest time is metadata like the counts: the same after recover
    fs.kill9()
    fs.mount(*fs.mount_args)
    assert usage(sock, alice) == before
    fs.unmount()
    shutil.rmtree(fs.fs_dir / "meta")  # a new host: the metadata comes back from the pools
    shutil.rmtree(fs.fs_dir / "cache", ignore_errors=True)
    res = run_repfs("recover", str(fs.fs_dir), "--key-file", str(fs.key), "--force", timeout=120)
    assert res.returncode == 0, res.stderr
    fs.mount(*fs.mount_args)
    assert usage(sock, alice) == before == from_tree(home)
    assert ingested() == made
    shown: dict[str, Any] = json.loads(admin(sock, "users", "list", "--json").stdout)[0]
    assert {"usage", "quota"} <= set(shown)
