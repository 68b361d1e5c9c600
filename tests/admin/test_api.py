"""The admin API of a real mount, through the real socket with the real curl, and
repfs-admin on top of it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.admin.rig import ADMIN, admin, admin_json, curl
from tests.helpers import Repfs, wait_for

pytestmark = pytest.mark.timeout(180)

ADMIN_GID = 4242  # a group nobody is in: named by number, as --admin-group allows


@pytest.fixture
def fs(repfs_factory: Callable[..., Repfs], sockdir: Path) -> Repfs:
    fs = repfs_factory()
    fs.sock = sockdir / "a.sock"  # type: ignore[attr-defined]
    sock = fs.sock  # type: ignore[attr-defined]
    fs.mount("--admin-socket", str(sock), "--admin-group", str(ADMIN_GID), "--audit", "--usage-interval", "1")
    return fs


def test_status_and_pools_through_curl(fs: Repfs) -> None:
    sock: Path = fs.sock  # type: ignore[attr-defined]
    (fs.mnt / "f").write_bytes(os.urandom(300_000))
    code, st = curl(sock, "GET", "/v1/status")
    assert code == 200, st
    assert st["mountpoint"] == str(fs.mnt) and st["replicas"] == 2 and st["block_size"] == 64 * 1024
    assert [p["name"] for p in st["pools"]] == ["pool1", "pool2", "pool3"]
    assert {p["state"] for p in st["pools"]} == {"up"}
    code, pools = curl(sock, "GET", "/v1/pools")
    assert code == 200 and [p["url"] for p in pools["pools"]] == [f"file://{p}" for p in fs.pools]
    code, one = curl(sock, "GET", "/v1/pools/pool2")
    assert code == 200 and one["name"] == "pool2" and one["warn_threshold"] == 0.8 and one["critical_threshold"] == 0.9
    assert wait_for(lambda: curl(sock, "GET", "/v1/pools/pool2")[1]["used"], 30)  # measured in the background
    # the socket: mode 0660, group the admin group; FS_DIR/admin.sock leads to it
    st_sock = sock.stat()
    assert stat.S_ISSOCK(st_sock.st_mode) and stat.S_IMODE(st_sock.st_mode) == 0o660 and st_sock.st_gid == ADMIN_GID
    assert os.readlink(fs.fs_dir / "admin.sock") == str(sock)
    # repfs-admin: JSON and tables, found by mount point too
    assert admin_json(sock, "status")["fs_uuid"] == st["fs_uuid"]
    res = subprocess.run([*ADMIN, "-m", str(fs.mnt), "pools", "list"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert header.split()[:3] == ["POOL", "STATE", "WEIGHT"]
    assert [r.split()[0] for r in rows] == ["pool1", "pool2", "pool3"]
    column = header.index("STATE")  # aligned: every row's state starts under the header
    assert all(r[column:].startswith("up ") for r in rows), res.stdout


def test_errors_are_json_with_the_right_status_and_never_hurt_the_daemon(fs: Repfs) -> None:
    sock: Path = fs.sock  # type: ignore[attr-defined]
    assert curl(sock, "GET", "/v1/nope") == (404, {"error": "no such endpoint: /v1/nope"})
    code, err = curl(sock, "GET", "/v1/pools/nope")
    assert code == 404 and "no pool named 'nope'" in err["error"]
    code, err = curl(sock, "PATCH", "/v1/pools/pool1", raw_body="{not json")
    assert code == 400 and "not valid JSON" in err["error"]
    code, err = curl(sock, "PATCH", "/v1/pools/pool1", {"weight": -1})
    assert code == 400 and "weight" in err["error"]
    code, err = curl(sock, "PATCH", "/v1/pools/pool1", {"colour": "red"})
    assert code == 400 and "unknown setting" in err["error"]
    code, err = curl(sock, "PUT", "/v1/pools/pool1")
    assert code == 405
    code, err = curl(sock, "POST", "/v1/pools", {"name": "x", "url": "ftp://nowhere"})
    assert code == 400 and "unsupported URL" in err["error"]
    code, err = curl(sock, "POST", "/v1/pools", {"name": "pool1", "url": f"file://{fs.base}/other"})
    assert code == 409 and "exists already" in err["error"]
    code, err = curl(sock, "POST", "/v1/pools/pool1/clear")
    assert code == 409 and "not failed" in err["error"]
    code, err = curl(sock, "POST", "/v1/scrub", raw_body=json.dumps({"restart": True, "pad": "x" * 100_000}))
    assert code == 413 and "larger than" in err["error"]
    # garbage and half requests on raw connections, many at once
    def raw(data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(sock))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return s.recv(65536)

    assert raw(b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab").startswith(b"HTTP/1.1 400")
    big = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    assert raw(big).startswith(b"HTTP/1.1 431")
    answers: list[bytes] = []
    health = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    threads = [threading.Thread(target=lambda: answers.append(raw(health))) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 40 and all(a.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")) for a in answers)
    assert any(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert fs.alive and curl(sock, "GET", "/v1/health")[0] == 200
    # repfs-admin's exit codes say what went wrong
    assert admin(sock, "pools", "remove", "nope").returncode == 4
    assert admin(sock, "pools", "set", "pool1", "--weight", "-2").returncode == 2
    assert admin(sock, "pools", "clear", "pool1").returncode == 5
    missing = admin(fs.base / "no.sock", "status")
    assert missing.returncode == 7 and "no admin socket" in missing.stderr


def test_only_root_and_the_admin_group_get_in(fs: Repfs) -> None:
    sock: Path = fs.sock  # type: ignore[attr-defined]
    code, err = curl(sock, "GET", "/v1/status", user="nobody")
    assert code == 0 and "connect" in err  # mode 0660: the kernel turns nobody away (EACCES)
    assert curl(sock, "GET", "/v1/status", user="nobody", extra_groups=[ADMIN_GID])[0] == 200
    sock.chmod(0o666)  # even with the mode loosened, the daemon checks the caller's credentials
    code, err = curl(sock, "GET", "/v1/status", user="nobody")
    assert code == 403 and "permission denied" in err["error"]
    code, err = curl(sock, "DELETE", "/v1/pools/pool3", user="nobody")
    assert code == 403
    assert curl(sock, "GET", "/v1/pools", user="nobody", extra_groups=[ADMIN_GID])[0] == 200
    fs.expect_log(r"admin socket: refused")
    assert "refused pid" in fs.log_text()


@pytest.mark.standalone
def test_online_scrub_repairs_a_damaged_copy_and_audit_names_the_caller(fs: Repfs) -> None:
    sock: Path = fs.sock  # type: ignore[attr-defined]
    data = os.urandom(5 * 64 * 1024)
    with open(fs.mnt / "victim", "wb") as f:
        f.write(data)
        os.fsync(f.fileno())
    os.rename(fs.mnt / "victim", fs.mnt / "victim2")
    (fs.mnt / "gone").write_bytes(b"x")
    os.unlink(fs.mnt / "gone")
    keys = sorted(fs.pool_keys(fs.pools[0]))
    assert keys
    (fs.pools[0] / keys[0]).write_bytes(b"garbage")
    fs.expect_log(r"repaired block|corrupt|digest mismatch")
    report = admin_json(sock, "scrub", "--restart")["report"]
    assert report["repaired"] >= 1 and report["unrecoverable"] == 0 and report["blocks"] >= 5
    assert admin_json(sock, "scrub", "--status")["running"] is False
    assert (fs.mnt / "victim2").read_bytes() == data
    lines = fs.log_text().splitlines()
    records = [json.loads(line.split("repfs.audit: ", 1)[1]) for line in lines if "repfs.audit: {" in line]
    seen = {(r["op"], r["path"], r.get("new_path"), r["result"]) for r in records}
    assert all(r["uid"] == 0 and r["account"] is None and r["time"].endswith("Z") for r in records), records[:3]
    for want in [
        ("create", "/victim", None, "ok"),
        ("rename", "/victim", "/victim2", "ok"),
        ("unlink", "/gone", None, "ok"),
        ("open", "/victim2", None, "ok"),
    ]:
        assert want in seen, (want, sorted(seen, key=str)[:20])
