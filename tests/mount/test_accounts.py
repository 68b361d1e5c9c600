"""Accounts and their namespaces on a real mount: host users made with useradd, callers as
those users (forked children with setresuid), the admin socket through `repfs-admin`."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from repfs.admin.client import AdminClient
from tests.helpers import Repfs, oserror, run_as, run_repfs, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(180)


def test_accounts_have_private_namespaces_and_a_disabled_one_is_refused(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice, bob = names[0], names[1]
    info = add(sock, alice)
    add(sock, bob)
    uid, gid = ids(alice)
    assert info["uid"] == uid and info["name"] == alice and "password" not in info
    home = fs.mnt / alice
    st = home.stat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and (st.st_uid, st.st_gid) == (uid, gid)
    listed = json.loads(admin(sock, "users", "list", "--json").stdout)
    assert {a["name"] for a in listed} == {alice, bob}

    def work() -> object:
        (home / "notes").write_bytes(b"mine")
        os.mkdir(home / "sub")
        (home / "sub" / "deeper").write_bytes(b"x" * 70_000)
        deep = home / "sub" / "/".join(f"d{i}" for i in range(40))
        os.makedirs(deep)
        (deep / "bottom").write_bytes(b"b")
        return stat.S_IMODE(os.stat(home / "notes").st_mode)

    mode = run_as(uid, gid, work)
    assert isinstance(mode, int) and mode & 0o077 == 0, oct(mode)  # the default ACL keeps it private
    assert stat.S_IMODE(fs.mnt.stat().st_mode) == 0o1775 and fs.mnt.stat().st_uid == 0  # the admins' top level
    assert run_as(uid, gid, lambda: (fs.mnt / "top-level").write_bytes(b"no")) == errno.EACCES
    buid, bgid = ids(bob)
    assert run_as(buid, bgid, lambda: os.listdir(home)) == errno.EACCES  # another's namespace
    assert run_as(buid, bgid, lambda: (home / "notes").read_bytes()) == errno.EACCES

    # root too: a rename between namespaces is EXDEV (mv copies), and a namespace goes with its account
    assert oserror(lambda: os.rename(home / "notes", fs.mnt / bob / "notes")) == errno.EXDEV
    assert oserror(lambda: os.rename(fs.mnt / "outside", home / "x")) in (errno.ENOENT,)
    (fs.mnt / "outside").write_bytes(b"o")
    assert oserror(lambda: os.rename(fs.mnt / "outside", home / "x")) == errno.EXDEV
    assert oserror(lambda: os.rename(home, fs.mnt / "renamed")) == errno.EPERM
    assert oserror(lambda: os.link(home / "notes", fs.mnt / bob / "hard")) == errno.EXDEV
    assert oserror(lambda: os.link(fs.mnt / "outside", home / "hard")) == errno.EXDEV
    os.link(home / "notes", home / "sub" / "hard")  # inside one namespace: a link
    os.unlink(home / "sub" / "hard")
    assert oserror(lambda: os.rmdir(fs.mnt / bob)) == errno.EPERM
    os.rename(home / "sub" / "deeper", home / "deeper")  # inside one namespace: a rename
    assert (home / "deeper").stat().st_size == 70_000
    subprocess.run(["mv", str(home / "deeper"), str(fs.mnt / bob / "moved")], check=True, timeout=30)
    assert (fs.mnt / bob / "moved").stat().st_size == 70_000 and not (home / "deeper").exists()

    def open_then_disable() -> object:
        """A file opened before the account is disabled: its writes stop too (reads of
        pages the kernel has cached may still answer, until the kernel drops them)."""
        with open(home / "notes", "r+b", buffering=0) as f:
            assert f.read(2) == b"mi"
            os.write(go, b"x")  # the parent disables the account now
            os.read(back, 1)
            f.seek(0)
            return oserror(lambda: f.write(b"z"))

    go_r, go = os.pipe()
    back, back_w = os.pipe()
    with ThreadPoolExecutor(1) as pool:
        child = pool.submit(run_as, uid, gid, open_then_disable)
        os.read(go_r, 1)
        res = admin(sock, "users", "disable", alice)
        os.write(back_w, b"x")
        assert child.result(timeout=30) == errno.EACCES
    for fd in (go_r, go, back, back_w):
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert run_as(uid, gid, lambda: (home / "notes").read_bytes()) == errno.EACCES
    assert run_as(uid, gid, lambda: (home / "new").write_bytes(b"no")) == errno.EACCES
    assert json.loads(admin(sock, "users", "show", alice, "--json").stdout)["disabled"] is True
    status = json.loads(admin(sock, "status", "--json").stdout)
    assert status["accounts"] == {"total": 2, "refused": 1, "not_on_host": []}
    assert admin(sock, "users", "enable", alice).returncode == 0
    assert run_as(uid, gid, lambda: (home / "notes").read_bytes()) == b"mine"
    fs.expect_log(r"account \S+ (disabled|enabled|removed)")

    lines = fs.log_text().splitlines()
    records = [json.loads(line.split("repfs.audit: ", 1)[1]) for line in lines if "repfs.audit: {" in line]
    seen = {(r["account"], r["op"], r["path"], r["result"]) for r in records}
    for want in [
        (None, "users.add", f"/{alice}", "ok"),
        (alice, "create", f"/{alice}/notes", "ok"),
        (alice, "mkdir", f"/{alice}/sub", "ok"),
        (alice, "refused", None, "EACCES"),  # while disabled
        (alice, "open", f"/{alice}/notes", "ok"),
        (None, "rename", f"/{alice}/notes", "EXDEV"),
        (None, "users.disable", f"/{alice}", "ok"),
    ]:
        assert want in seen, (want, sorted(seen, key=str))
    assert all("password" not in json.dumps(r) for r in records)

    res = admin(sock, "users", "remove", alice)
    assert res.returncode == 5 and "not empty" in res.stderr, res.stderr
    res = admin(sock, "users", "remove", alice, "--delete-files")
    assert res.returncode == 0, res.stderr
    assert wait_for(lambda: not (fs.mnt / alice).exists(), 5)
    assert {a["name"] for a in json.loads(admin(sock, "users", "list", "--json").stdout)} == {bob}
    fs.unmount()  # nothing left behind: no orphan inode, no stray link
    res = run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    fs.mount(*fs.mount_args)


def test_bad_account_input_is_refused_with_one_line(mounted: tuple[Repfs, Path], names: list[str]) -> None:
    fs, sock = mounted
    add(sock, names[0])
    cases = [
        (("users", "add", "Bad Name", "--email", "x@example.org"), 2),
        (("users", "add", names[1], "--email", "not-an-email", "--create-system-user"), 2),
        (("users", "add", names[1], "--email", f"{names[0]}@example.org", "--create-system-user"), 5),  # same email
        (("users", "add", names[2], "--email", "z@example.org"), 2),  # no such host user
        (("users", "add", names[1], "--email", "y@example.org", "--create-system-user", "--valid-until", "soon"), 2),
        (("users", "show", "nobody-here"), 4),
        (("users", "disable", "nobody-here"), 4),
    ]
    for args, code in cases:
        res = admin(sock, *args)
        assert res.returncode == code, (args, res.returncode, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert fs.alive


def test_accounts_survive_remount_and_kill9_and_passwords_stay_secret(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    name = names[0]
    add(sock, name, "--valid-until", "2099-12-31")
    password = "correct horse " + secrets.token_hex(8)
    r, w = os.pipe()
    os.write(w, password.encode())
    os.close(w)
    res = admin(sock, "users", "passwd", name, "--password-fd", str(r), input_fd=r)
    os.close(r)
    assert res.returncode == 0, res.stderr
    shown = json.loads(admin(sock, "users", "show", name, "--json").stdout)
    assert shown["password_set"] is True and password not in json.dumps(shown)
    fs.kill9()
    fs.mount(*fs.mount_args)
    shown = json.loads(admin(sock, "users", "show", name, "--json").stdout)
    assert shown["password_set"] is True and shown["valid_until"] > 0
    assert (fs.mnt / name).is_dir()
    fs.unmount()
    needle = password.encode()
    for path in [*fs.logs, *[p for pool in fs.pools for p in pool.rglob("*") if p.is_file()]]:
        assert needle not in path.read_bytes(), path
    fs.mount(*fs.mount_args)


def test_the_kernel_forgets_what_it_cached_of_a_namespace_made_or_removed(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    """The kernel remembers names (missing ones too) and attributes for 1 s; the daemon
    tells it to forget them when it makes or removes a namespace itself."""
    fs, sock = mounted
    name = names[0]
    subprocess.run(["useradd", "--no-create-home", "--user-group", name], check=True, timeout=30)
    client = AdminClient(sock, timeout=30)
    proven = 0
    for _ in range(5):
        assert not (fs.mnt / name).exists()  # now remembered as missing
        started = time.monotonic()
        client.request("POST", "/v1/users", {"name": name, "email": f"{name}@example.org"})
        assert wait_for(lambda: (fs.mnt / name).is_dir(), 0.5, interval=0.01)
        assert (fs.mnt / name).is_dir()  # attributes and entry cached again
        client.request("DELETE", f"/v1/users/{name}")
        assert wait_for(lambda: not (fs.mnt / name).exists(), 0.5, interval=0.01)
        proven += time.monotonic() - started < 1.0  # a slower round cannot tell this from expiry
    assert proven, "no round was quick enough to show the invalidation"


def test_accounts_come_back_with_recover_on_a_new_host(mounted: tuple[Repfs, Path], names: list[str]) -> None:
    fs, sock = mounted
    name, friend = names[0], names[1]
    add(sock, name)
    add(sock, friend)
    uid, gid = ids(name)
    home = fs.mnt / name
    assert run_as(uid, gid, lambda: (home / "report").write_bytes(b"kept")) == 4  # bytes written
    res = admin(sock, "shares", "add", str(home / "report"), friend, "--role", "reader")
    assert res.returncode == 0, res.stderr
    subprocess.run(["usermod", "--uid", str(uid + 500), name], check=True, timeout=30)  # behind repfs's back
    status = admin(sock, "status")
    assert f"NOT ON THIS HOST (name or uid changed): {name}" in status.stdout, status.stdout
    subprocess.run(["usermod", "--uid", str(uid), name], check=True, timeout=30)
    fs.unmount()
    shutil.rmtree(fs.fs_dir / "meta")  # a new host: only repfs.toml is left, and the user is not there
    shutil.rmtree(fs.fs_dir / "cache", ignore_errors=True)
    subprocess.run(["userdel", name], check=True, timeout=30)
    subprocess.run(["userdel", friend], check=True, timeout=30)
    res = run_repfs("recover", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode != 0 and f"{name} (uid {uid}) has no passwd entry" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(fs.key), "--foreground", timeout=60)
    assert res.returncode != 0 and "do not match this host" in res.stderr, res.stderr  # nor does it mount
    res = run_repfs("recover", str(fs.fs_dir), "--key-file", str(fs.key), "--force", "--create-system-users")
    assert res.returncode == 0, res.stderr
    assert ids(name)[0] == uid  # made again with its old uid
    fs.mount(*fs.mount_args)
    assert json.loads(admin(sock, "users", "show", name, "--json").stdout)["uid"] == uid
    assert home.stat().st_uid == uid and (home / "report").read_bytes() == b"kept"
    shares = json.loads(admin(sock, "shares", "list", "--user", friend, "--json").stdout)  # back with the metadata
    assert [(s["path"], s["role"]) for s in shares] == [(f"/{name}/report", "reader")]
    f_uid, f_gid = ids(friend)
    assert run_as(f_uid, f_gid, lambda: (home / "report").read_bytes()) == b"kept"
