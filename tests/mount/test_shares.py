"""Shares on a real mount: what each role may do on a shared file and inside a shared
folder (also with files made after the share), as the kernel and repfs decide together;
revokes at once; shares that survive chmod and `setfacl -b`; a folder of 10,000 files
shared by one change. Callers are forked children with setresuid."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from repfs.admin.cli import main as admin_main
from tests.helpers import Repfs, oserror, run_as, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(240)


def share(sock: Path, path: Path | str, user: str, role: str) -> dict[str, Any]:
    res = admin(sock, "shares", "add", str(path), user, "--role", role, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    answer: dict[str, Any] = json.loads(res.stdout)
    return answer


def unshare(sock: Path, path: Path | str, user: str) -> None:
    res = admin(sock, "shares", "remove", str(path), user)
    assert res.returncode == 0, res.stdout + res.stderr


def code(fn: Callable[[], object]) -> str:
    e = oserror(fn)
    return "ok" if e is None else errno.errorcode[e]


def ops(folder: Path, theirs: Path, mine_name: str) -> dict[str, str]:
    """What a caller gets inside `folder` (a shared folder), on `theirs` (the owner's file)."""
    mine = folder / mine_name
    return {
        "list": code(lambda: os.listdir(folder)),
        "read": code(theirs.read_bytes),
        "write": code(lambda: theirs.open("r+b").write(b"edited")),
        "truncate": code(lambda: os.truncate(theirs, 3)),
        "create": code(lambda: mine.write_bytes(b"new")),
        "mkdir": code(lambda: (folder / (mine_name + ".d")).mkdir()),
        "unlink theirs": code(lambda: os.unlink(theirs)),
        "rename theirs": code(lambda: os.rename(theirs, folder / "renamed")),
        "chmod theirs": code(lambda: os.chmod(theirs, 0o666)),
        "unlink mine": code(lambda: os.unlink(mine)),
    }


ALLOWED = {
    "reader": {"list": "ok", "read": "ok", "write": "EACCES", "truncate": "EACCES", "create": "EACCES",
               "mkdir": "EACCES", "unlink theirs": "EACCES", "rename theirs": "EACCES", "chmod theirs": "EPERM",
               "unlink mine": "ENOENT"},
    "editor": {"list": "ok", "read": "ok", "write": "ok", "truncate": "ok", "create": "ok", "mkdir": "ok",
               "unlink theirs": "EPERM", "rename theirs": "EPERM", "chmod theirs": "EPERM", "unlink mine": "ok"},
    "none": {"list": "EACCES", "read": "EACCES", "write": "EACCES", "truncate": "EACCES", "create": "EACCES",
             "mkdir": "EACCES", "unlink theirs": "EACCES", "rename theirs": "EACCES", "chmod theirs": "EACCES",
             "unlink mine": "EACCES"},
}  # fmt: skip
ALLOWED["master"] = ALLOWED["editor"]


@pytest.fixture
def people(mounted: tuple[Repfs, Path], names: list[str]) -> dict[str, tuple[int, int]]:
    _, sock = mounted
    for name in names:
        add(sock, name)
    return {name: ids(name) for name in names}


def test_each_role_on_a_shared_folder_and_what_is_made_there_later(
    mounted: tuple[Repfs, Path], names: list[str], people: dict[str, tuple[int, int]]
) -> None:
    fs, sock = mounted
    alice, bob, carol = names
    a, b, c = people[alice], people[bob], people[carol]
    home = fs.mnt / alice
    run_as(*a, lambda: (home / "secret").mkdir())
    run_as(*a, lambda: (home / "secret" / "plans").write_bytes(b"private"))
    for role in ("reader", "editor", "master"):
        folder = home / role
        run_as(*a, folder.mkdir)
        share(sock, folder, bob, role)
        # made after the share, with a private mode and an open one
        for mode in (0o600, 0o644):
            f = folder / f"made-{mode:o}"

            def make(f: Path = f, mode: int = mode) -> None:
                f.write_bytes(b"owner's data")
                f.chmod(mode)

            run_as(*a, make)
            got = run_as(*b, partial(ops, folder, f, f"bobs{mode:o}"))
            assert got == ALLOWED[role], (role, oct(mode), got)
            run_as(*a, partial(f.write_bytes, b"owner's data"))  # as it was, for the next round
        # carol has no share: nothing, not even a listing
        got = run_as(*c, partial(ops, folder, folder / "made-644", "carols"))
        assert got == ALLOWED["none"], (role, got)
    # the grantee reaches the shared folders, but cannot list the owner's home or other folders
    assert run_as(*b, lambda: code(lambda: os.listdir(home))) == "EACCES"
    assert run_as(*b, lambda: code(lambda: os.listdir(home / "secret"))) == "EACCES"
    assert run_as(*b, lambda: code((home / "secret" / "plans").read_bytes)) == "EACCES"
    assert run_as(*b, lambda: code(lambda: os.stat(home / "reader"))) == "ok"
    # the owner can do everything with what the grantee made in its namespace
    run_as(*b, lambda: (home / "editor" / "bobs2").write_bytes(b"b"))
    assert run_as(*a, lambda: (home / "editor" / "bobs2").read_bytes()) == b"b"
    assert run_as(*a, lambda: code(lambda: os.unlink(home / "editor" / "bobs2"))) == "ok"


def test_a_shared_file_a_master_shares_on_and_an_editor_cannot(
    mounted: tuple[Repfs, Path], names: list[str], people: dict[str, tuple[int, int]]
) -> None:
    fs, sock = mounted
    alice, bob, carol = names
    a, b, c = people[alice], people[bob], people[carol]
    f = fs.mnt / alice / "report.txt"
    run_as(*a, lambda: f.write_bytes(b"v1"))
    share(sock, f, bob, "master")
    assert run_as(*b, lambda: f.read_bytes()) == b"v1"
    # bob, a master, shares with carol through the user socket (repfs-admin as bob)
    res = run_as(*b, lambda: _cli(fs.mnt, "shares", "add", str(f), carol, "--role", "reader", "--json"))
    assert res[0] == 0, res
    assert run_as(*c, lambda: f.read_bytes()) == b"v1"
    assert run_as(*c, lambda: code(lambda: f.write_bytes(b"x"))) == "EACCES"
    # carol, a reader, may not share further; nobody may share with or remove the owner
    res = run_as(*c, lambda: _cli(fs.mnt, "shares", "add", str(f), bob, "--role", "reader"))
    assert res[0] == 3 and "owner or a master" in res[1], res
    res = run_as(*b, lambda: _cli(fs.mnt, "shares", "add", str(f), alice, "--role", "reader"))
    assert res[0] == 2 and "owns this namespace" in res[1], res
    res = run_as(*b, lambda: _cli(fs.mnt, "shares", "remove", str(f), alice))
    assert res[0] == 4, res
    # what each sees of their shares
    res = run_as(*c, lambda: _cli(fs.mnt, "shares", "list", "--mine", "--json"))
    assert res[0] == 0 and [s["path"] for s in json.loads(res[1])["given"]] == [f"/{alice}/report.txt"], res
    listed = json.loads(admin(sock, "shares", "list", str(f), "--json").stdout)
    assert {(s["user"], s["role"], s["by"]) for s in listed} == {(bob, "master", "root"), (carol, "reader", bob)}
    # a master removes carol's share; the revoke applies at once, also to a cached path
    assert run_as(*c, lambda: f.read_bytes()) == b"v1"  # the kernel now caches the name and attributes
    res = run_as(*b, lambda: _cli(fs.mnt, "shares", "remove", str(f), carol))
    assert res[0] == 0, res
    # the kernel keeps an ACL it read until it is told to forget it: without the
    # invalidation this would stay "ok" for as long as the inode is cached
    started = time.monotonic()
    assert wait_for(lambda: run_as(*c, lambda: code(f.read_bytes)) == "EACCES", 0.3, interval=0.01)
    print(f"a revoked reader was refused {(time.monotonic() - started) * 1000:.0f} ms after the revoke returned")


def test_shares_survive_chmod_and_setfacl_b_and_a_big_folder_is_one_change(
    mounted: tuple[Repfs, Path], names: list[str], people: dict[str, tuple[int, int]]
) -> None:
    fs, sock = mounted
    alice, bob, _ = names
    a, b = people[alice], people[bob]
    big = fs.mnt / alice / "big"

    def fill() -> None:
        big.mkdir()
        for d in range(10):
            (big / f"d{d}").mkdir()
            for i in range(1000):
                (big / f"d{d}" / f"f{i}").write_bytes(b"x")

    run_as(*a, fill)
    started = time.monotonic()
    share(sock, big, bob, "reader")
    took = time.monotonic() - started
    assert run_as(*b, lambda: (big / "d9" / "f999").read_bytes()) == b"x"
    assert run_as(*b, lambda: len(os.listdir(big / "d3"))) == 1000
    print(f"sharing a folder of 10,000 files took {took * 1000:.0f} ms (repfs-admin included)")
    # the owner's chmod and setfacl -b change what it stored, not the share
    run_as(*a, lambda: os.chmod(big / "d1" / "f1", 0o600))
    run_as(*a, lambda: subprocess.run(["setfacl", "-b", str(big / "d2")], check=True))
    assert run_as(*b, lambda: (big / "d1" / "f1").read_bytes()) == b"x"
    assert run_as(*b, lambda: len(os.listdir(big / "d2"))) == 1000
    # setfacl -m writes back the whole ACL it read, the share's entry for bob included:
    # that entry is not stored, so once the share is gone bob has no entry left
    f2 = big / "d1" / "f2"
    run_as(*a, lambda: subprocess.run(["setfacl", "-m", f"u:{bob}:r", str(f2)], check=True))
    assert f"user:{b[0]}:r--" in _getfacl(f2)  # what the kernel is shown while shared
    unshare(sock, big, bob)
    assert wait_for(lambda: f"user:{b[0]}:" not in _getfacl(f2), 0.5, interval=0.02), _getfacl(f2)
    assert wait_for(lambda: run_as(*b, lambda: code(f2.read_bytes)) == "EACCES", 0.5, interval=0.02)


def _getfacl(path: Path) -> str:
    return subprocess.run(["getfacl", "--numeric", "-p", str(path)], capture_output=True, text=True, timeout=30,
                          check=True).stdout  # fmt: skip


def _cli(mnt: Path, *args: str) -> tuple[int, str]:
    """repfs-admin in-process (imported here, before a forked child drops root: the child
    may not be able to read the interpreter's files)."""
    res = CliRunner().invoke(admin_main, ["-m", str(mnt), *args])
    return res.exit_code, res.output
