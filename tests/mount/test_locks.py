"""Locks on a real mount: a file one account has open for writing is locked against the
others (EBUSY for their writers, truncate, unlink and rename), never against its own
second open or anyone's reads; `locks break` ends it and the old holder's writes fail
with EIO. Callers are forked children with setresuid; one of them keeps its file open
while the others try."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Repfs, oserror, run_as, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(180)


class Holder:
    """A child process of `uid` that keeps `path` open for writing until told to close."""

    def __init__(self, uid: int, gid: int, path: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._to_child)
            os.close(self._from_child)
            code = 0
            try:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                fd = os.open(path, os.O_WRONLY)
                os.write(from_child_w, b"open\n")
                with os.fdopen(to_child_r) as commands:
                    for line in commands:
                        if line.strip() == "write":
                            answer = str(oserror(lambda: os.pwrite(fd, b"holder", 0)) or 0)
                            os.write(from_child_w, answer.encode() + b"\n")
                        elif line.strip() == "close":
                            os.close(fd)
                            break
            except OSError as exc:
                os.write(from_child_w, f"failed {exc.errno}\n".encode())
                code = 1
            os._exit(code)
        os.close(to_child_r)
        os.close(from_child_w)
        self._answers = os.fdopen(self._from_child)
        first = self._answers.readline().strip()
        assert first == "open", first

    def write(self) -> int:
        """The errno of a write through the held handle (0: it worked)."""
        os.write(self._to_child, b"write\n")
        return int(self._answers.readline())

    def close(self) -> None:
        os.write(self._to_child, b"close\n")
        os.close(self._to_child)
        os.waitpid(self.pid, 0)
        self._answers.close()


def tries(path: Path, other: Path) -> dict[str, Any]:
    """What a second account gets on a file someone else may hold: errno per operation."""
    return {
        "open for writing": oserror(lambda: os.close(os.open(path, os.O_WRONLY))),
        "open with O_TRUNC": oserror(lambda: os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))),
        "truncate by path": oserror(lambda: os.truncate(path, 0)),
        "unlink": oserror(lambda: os.unlink(path)),
        "rename away": oserror(lambda: os.rename(path, path.with_name("moved"))),
        "rename over": oserror(lambda: os.rename(other, path)),
        "read": oserror(lambda: path.read_bytes()),
    }


def locks(sock: Path) -> list[dict[str, Any]]:
    res = admin(sock, "locks", "list", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    held: list[dict[str, Any]] = json.loads(res.stdout)["locks"]
    return held


def two_writers(
    fs: Repfs, sock: Path, names: list[str], data: bytes
) -> tuple[tuple[int, int], tuple[int, int], Path, Path]:
    """Accounts names[0] and names[1] ((uid, gid) each), a folder both may write and a
    file in it both may write: only the lock keeps them apart."""
    add(sock, names[0])
    add(sock, names[1])
    pub = fs.mnt / "pub"
    pub.mkdir()
    pub.chmod(0o777)
    f = pub / "report.txt"
    f.write_bytes(data)
    f.chmod(0o666)
    return ids(names[0]), ids(names[1]), pub, f


def test_a_file_open_for_writing_is_locked_against_other_accounts(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    (a_uid, a_gid), (b_uid, b_gid), pub, f = two_writers(fs, sock, names, b"first version")

    def other_file() -> Path:
        o = pub / "other"
        o.write_bytes(b"o")
        return o

    held = Holder(a_uid, a_gid, f)
    try:
        busy = run_as(b_uid, b_gid, lambda: tries(f, other_file()))
        assert busy == {
            "open for writing": errno.EBUSY,
            "open with O_TRUNC": errno.EBUSY,
            "truncate by path": errno.EBUSY,
            "unlink": errno.EBUSY,
            "rename away": errno.EBUSY,
            "rename over": errno.EBUSY,
            "read": None,
        }, busy
        assert f.read_bytes() == b"first version"
        # the holder's own second open, and its writes, are fine
        assert run_as(a_uid, a_gid, lambda: oserror(lambda: os.close(os.open(f, os.O_WRONLY)))) is None
        assert held.write() == 0
        (lock,) = locks(sock)
        assert lock["path"] == "/pub/report.txt" and lock["holder"] == names[0] and lock["uid"] == a_uid
        assert lock["how"] == "open" and lock["handles"] >= 1
    finally:
        held.close()
    # the last release ends the lock (FUSE sends it after close returns: wait for it)
    assert wait_for(lambda: not locks(sock), 10)
    assert run_as(b_uid, b_gid, lambda: oserror(lambda: os.close(os.open(f, os.O_WRONLY)))) is None


def test_a_broken_lock_refuses_the_old_holders_writes(mounted: tuple[Repfs, Path], names: list[str]) -> None:
    fs, sock = mounted
    alice = names[0]
    (a_uid, a_gid), (b_uid, b_gid), _, f = two_writers(fs, sock, names, b"x")
    held = Holder(a_uid, a_gid, f)
    try:
        res = admin(sock, "locks", "break", str(f), "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["holder"] == alice, res.stdout + res.stderr
        assert held.write() == errno.EIO  # never two writers
        assert run_as(b_uid, b_gid, lambda: oserror(lambda: f.write_bytes(b"bob's"))) is None
        assert f.read_bytes() == b"bob's"
        assert wait_for(lambda: not locks(sock), 10)  # bob's release arrives after his close
        res = admin(sock, "locks", "break", str(f))
        assert res.returncode == 5 and "not locked" in res.stderr, res.stderr
        res = admin(sock, "locks", "break", "/no/such/file")
        assert res.returncode == 4, res.stderr
    finally:
        held.close()
    assert wait_for(lambda: '"op": "locks.break"' in fs.log_text(), 10)
