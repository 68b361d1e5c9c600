"""Legal holds on a real mount: a held folder and everything in it refuses delete, rename,
truncate, write and new names to everyone, root included (EPERM), also through a handle
opened before the hold; reading goes on; the account cannot be removed with
its files while the hold stands; lifting it restores the usual rules."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests.helpers import Repfs, oserror, run_as, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(180)


def refusals(case: Path, doc: Path, outside: Path) -> dict[str, int | None]:
    outside.write_bytes(b"o")
    return {
        "unlink": oserror(lambda: os.unlink(doc)),
        "rename": oserror(lambda: os.rename(doc, case / "renamed")),
        "rename over": oserror(lambda: os.rename(outside, doc)),
        "create in it": oserror(lambda: (case / "new").write_bytes(b"added")),
        "move into it": oserror(lambda: os.rename(outside, case / "moved-in")),
        "truncate": oserror(lambda: os.truncate(doc, 0)),
        "open for writing": oserror(lambda: os.close(os.open(doc, os.O_WRONLY))),
        "rename the folder": oserror(lambda: os.rename(case, case.with_name("moved"))),
        "read": oserror(doc.read_bytes),
    }


EXPECTED = {"unlink": errno.EPERM, "rename": errno.EPERM, "rename over": errno.EPERM, "create in it": errno.EPERM,
            "move into it": errno.EPERM, "truncate": errno.EPERM, "open for writing": errno.EPERM,
            "rename the folder": errno.EPERM, "read": None}  # fmt: skip


def test_a_hold_refuses_every_change_to_everyone_until_lifted(mounted: tuple[Repfs, Path], names: list[str]) -> None:
    fs, sock = mounted
    alice = names[0]
    add(sock, alice)
    a = ids(alice)
    case = fs.mnt / alice / "case"
    doc = case / "evidence.txt"

    def make() -> None:
        case.mkdir()
        doc.write_bytes(b"as it was")

    run_as(*a, make)
    early = os.open(doc, os.O_WRONLY)  # opened before the hold
    try:
        res = admin(sock, "hold", "add", str(case), "--reason", "case 42", "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["path"] == f"/{alice}/case", res.stdout + res.stderr
        assert oserror(lambda: os.pwrite(early, b"changed", 0)) == errno.EPERM
    finally:
        os.close(early)

    outside = fs.mnt / alice / "outside"
    assert refusals(case, doc, outside) == EXPECTED  # root
    assert run_as(*a, lambda: refusals(case, doc, fs.mnt / alice / "outside2")) == EXPECTED  # the owner
    assert doc.read_bytes() == b"as it was"
    held = json.loads(admin(sock, "hold", "list", "--json").stdout)["holds"]
    assert [(h["path"], h["reason"], h["by"]) for h in held] == [(f"/{alice}/case", "case 42", "root")]
    res = admin(sock, "users", "remove", alice, "--delete-files")
    assert res.returncode == 5 and "legal hold" in res.stderr, res.stderr
    assert doc.exists()
    res = admin(sock, "hold", "remove", str(case))
    assert res.returncode == 0, res.stderr
    assert run_as(*a, lambda: oserror(lambda: os.unlink(doc))) is None
    assert wait_for(lambda: '"op": "hold.remove"' in fs.log_text() and '"op": "hold.add"' in fs.log_text(), 10)
    res = admin(sock, "hold", "remove", str(case))
    assert res.returncode == 5 and "not on hold" in res.stderr
