"""The user socket on a real mount: callers as other uids (forked children with
setresuid) ask about their own account through `repfs-admin` and raw requests; admin
routes and other accounts' data are not there for them."""

from __future__ import annotations

import json
import os
import stat
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from repfs.admin.auth import user_socket_path
from repfs.admin.cli import main as admin_main
from repfs.admin.client import AdminClient, AdminError
from repfs.admin.user_socket import ACT_AS
from tests.helpers import Repfs, run_as, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(180)


def ask(
    path: Path, method: str, target: str, body: dict[str, Any] | None = None, *, act_as: str | None = None
) -> tuple[int, Any]:
    """(status, answer) of one request to the user socket."""
    client = AdminClient(path, timeout=30, user=True)
    try:
        return 200, client.request(method, target, body, headers={ACT_AS: act_as} if act_as else None)
    except AdminError as exc:
        return exc.status, exc.message


def cli(mnt: Path, *args: str, fds: dict[int, bytes] | None = None) -> tuple[int, str]:
    """`repfs-admin -m MNT ARGS` run in-process (in a forked child: as its uid)."""
    for fd, data in (fds or {}).items():
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        os.dup2(r, fd)
        os.close(r)
    res = CliRunner().invoke(admin_main, ["-m", str(mnt), *args])
    return res.exit_code, res.output


def test_the_user_socket_answers_only_about_the_callers_own_account(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice, bob = names[0], names[1]
    add(sock, alice)
    add(sock, bob)
    path = user_socket_path(fs.fs_dir)
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    a_uid, a_gid = ids(alice)

    # alice sees her account, not bob's, and no admin route at all
    status, me = run_as(a_uid, a_gid, lambda: ask(path, "GET", "/v1/me"))
    assert status == 200 and me["name"] == alice and me["uid"] == a_uid and "password" not in me
    for method, target in [("GET", "/v1/pools"), ("GET", "/v1/users"), ("POST", "/v1/users"),
                           ("GET", f"/v1/users/{bob}"), ("DELETE", f"/v1/users/{bob}"), ("GET", "/v1/status"),
                           ("POST", "/v1/scrub"), ("PATCH", "/v1/config")]:  # fmt: skip
        status, err = run_as(a_uid, a_gid, partial(ask, path, method, target, {} if method != "GET" else None))
        assert status == 404 and "no such endpoint" in err, (method, target, status, err)
    status, err = run_as(a_uid, a_gid, lambda: ask(path, "GET", "/v1/me", act_as=bob))
    assert status == 403 and "only root" in err
    # through repfs-admin, found from the mount point alone
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "users", "me", "--json"))
    assert code == 0 and json.loads(out)["name"] == alice, out
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "users", "show", bob))
    assert code == 3 and f"you are {alice}" in out, out
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "users", "list"))
    assert code == 7 and "not allowed to use the admin socket" in out, out
    # what repfs knows of a file: of her own, not of what she cannot reach
    run_as(a_uid, a_gid, lambda: (fs.mnt / alice / "note").write_bytes(b"n"))
    run_as(*ids(bob), lambda: (fs.mnt / bob / "private").write_bytes(b"p"))
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "info", str(fs.mnt / alice / "note"), "--json"))
    assert code == 0 and json.loads(out)["owner"] == alice and json.loads(out)["ingested"] > 0, out
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "info", str(fs.mnt / bob / "private")))
    assert code == 4 and "no such file" in out, out

    # a uid with no account, and root acting for one
    status, err = run_as(65534, 65534, lambda: ask(path, "GET", "/v1/me"))
    assert status == 403 and "uid 65534 has no account" in err
    status, me = ask(path, "GET", "/v1/me", act_as=bob)
    assert status == 200 and me["name"] == bob
    status, err = ask(path, "GET", "/v1/me", act_as="nobody-here")
    assert status == 404


def test_an_account_changes_its_own_password_and_a_disabled_one_is_refused(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice = names[0]
    add(sock, alice)
    path = user_socket_path(fs.fs_dir)
    a_uid, a_gid = ids(alice)
    one, two = "one " + os.urandom(6).hex(), "two " + os.urandom(6).hex()
    # no password yet: none asked for
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "users", "passwd", alice, "--password-fd", "50",
                                                 fds={50: one.encode()}))  # fmt: skip
    assert code == 0 and "password set" in out, out
    # now the current one is needed, and must be right
    status, err = run_as(a_uid, a_gid, lambda: ask(path, "PUT", "/v1/me/password", {"password": two}))
    assert status == 400 and "current password" in err
    status, err = run_as(
        a_uid, a_gid, lambda: ask(path, "PUT", "/v1/me/password", {"password": two, "old_password": "wrong"})
    )
    assert status == 403 and "not right" in err
    code, out = run_as(a_uid, a_gid, lambda: cli(fs.mnt, "users", "passwd", alice, "--password-fd", "50",
                                                 "--old-password-fd", "51",
                                                 fds={50: two.encode(), 51: one.encode()}))  # fmt: skip
    assert code == 0, out
    status, _ = run_as(a_uid, a_gid, lambda: ask(path, "PUT", "/v1/me/password", {"password": one,
                                                                                 "old_password": two}))  # fmt: skip
    assert status == 200  # so `two` was what the account held
    # root acting for the account needs no old password
    status, _ = ask(path, "PUT", "/v1/me/password", {"password": two}, act_as=alice)
    assert status == 200
    assert admin(sock, "users", "disable", alice).returncode == 0
    status, err = run_as(a_uid, a_gid, lambda: ask(path, "GET", "/v1/me"))
    assert status == 403 and "disabled" in err
    # audit records of the user socket, with the account's name; passwords nowhere
    assert wait_for(lambda: '"op": "me.passwd"' in fs.log_text(), 10)
    records = [json.loads(line[line.index("{"):]) for line in fs.log_text().splitlines() if '"me.passwd"' in line]
    assert {(r["account"], r["result"]) for r in records} >= {(alice, "ok"), (alice, "EACCES"), (None, "ok")}
    text = fs.log_text()
    assert one not in text and two not in text
    fs.unmount()
    assert not path.exists()
    fs.mount(*fs.mount_args)
    assert wait_for(path.exists, 10)
