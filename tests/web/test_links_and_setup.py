"""What the web interface asks of the API besides the files routes: one-time download
links, the first administrator's door, accounts to share with, whether a folder is
writable, and a temporary password that only lets its session change it."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import public_filesystem
from tests.mount.accounts_rig import admin
from tests.web.conftest import PASSWORD, Web, start_web, stop_web

pytestmark = pytest.mark.timeout(300)


def test_a_download_link_works_once_and_as_its_sign_in(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    data = os.urandom(300_000)
    assert a.put(f"/api/v1/files/{alice}/linked.bin", content=data).status_code == 201
    assert a.put(f"/api/v1/files/{alice}/other.txt", content=b"other").status_code == 201
    made = a.post("/api/v1/downloads", json={"paths": [f"{alice}/linked.bin"]})
    assert made.status_code == 201 and made.json()["zip"] is False, made.text
    anyone = web.client()  # no sign-in: the link is the sign-in
    got = anyone.get(made.json()["url"])
    assert got.status_code == 200 and got.content == data
    assert anyone.get(made.json()["url"]).status_code == 404  # once

    both = a.post("/api/v1/downloads", json={"paths": [f"{alice}/linked.bin", f"{alice}/other.txt"], "name": "two.zip"})
    assert both.status_code == 201 and both.json()["zip"] is True
    res = anyone.get(both.json()["url"])
    assert res.status_code == 200 and "two.zip" in res.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(res.content)) as z:
        assert sorted(z.namelist()) == ["linked.bin", "other.txt"] and z.read("linked.bin") == data

    assert a.post("/api/v1/downloads", json={"paths": [f"{alice}/missing"]}).status_code == 404
    assert a.post("/api/v1/downloads", json={"paths": "x"}).status_code == 400
    bob = web.sign_in(web.names[2])
    assert bob.post("/api/v1/downloads", json={"paths": [f"{alice}/linked.bin"]}).status_code == 403

    late = a.post("/api/v1/downloads", json={"paths": [f"{alice}/linked.bin"]}).json()["url"]
    assert a.delete("/api/v1/token").status_code == 204  # signed out: the link goes with the session
    assert anyone.get(late).status_code == 401


def test_setup_is_closed_once_an_administrator_exists(web: Web) -> None:
    c = web.client()
    state = c.get("/api/v1/setup").json()
    assert state["needed"] is False and state["local"] is True, state
    res = c.post("/api/v1/setup", json={"name": "intruder", "email": "i@example.org", "password": PASSWORD})
    assert res.status_code == 409, res.text


@contextlib.contextmanager
def outward_address() -> Iterator[str]:
    """An IPv4 address of this host that is not loopback: to repfs web, a client that
    connects to it is another host. Without one, a dummy interface lends one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # nothing is sent: the kernel picks the source address
            found = s.getsockname()[0]
        if not ipaddress.ip_address(found).is_loopback:
            yield found
            return
    except OSError:
        pass
    link, lent = f"repfs{secrets.token_hex(2)}", "198.18.77.1"
    for cmd in (["ip", "link", "add", link, "type", "dummy"], ["ip", "addr", "add", f"{lent}/32", "dev", link],
                ["ip", "link", "set", link, "up"]):  # fmt: skip
        subprocess.run(cmd, check=True, timeout=30)
    try:
        yield lent
    finally:
        subprocess.run(["ip", "link", "del", link], timeout=30)


def test_setup_from_another_host_takes_the_one_time_token_from_the_log() -> None:
    group, name = f"wso{secrets.token_hex(3)}", f"wsadm{secrets.token_hex(2)}"
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    subprocess.run(["groupadd", group], check=True, timeout=30)  # with no member: no administrator yet
    try:
        opts = ("--admin-socket", str(sock), "--admin-group", group)
        with outward_address() as host, public_filesystem(None, *opts) as fs:
            state = fs.base / "web"
            proc, url, log = start_web(fs, state, *opts, host=host)
            try:
                told = re.search(r"#/setup/([A-Za-z0-9_-]+)", log.read_text())
                assert told, log.read_text()
                token = told.group(1)
                tls = ssl.create_default_context(cafile=str(state / "cert.pem"))
                tls.check_hostname = False  # the certificate names localhost and this host's name, not every address
                with httpx.Client(base_url=url, verify=tls, timeout=60) as c:
                    asked = c.get("/api/v1/setup").json()
                    assert asked["needed"] is True and asked["local"] is False, asked
                    body = {"name": name, "email": f"{name}@example.org", "password": PASSWORD}
                    refused = c.post("/api/v1/setup", json=body)
                    assert refused.status_code == 403 and "one-time token" in refused.json()["message"], refused.text
                    wrong = c.post("/api/v1/setup", json={**body, "token": token[::-1]})
                    assert wrong.status_code == 403
                    made = c.post("/api/v1/setup", json={**body, "token": token})
                    assert made.status_code == 201 and made.json()["name"] == name, made.text
                    again = c.post("/api/v1/setup", json={**body, "name": name + "x", "token": token})
                    assert again.status_code in (403, 409)  # the token is gone, and the door is shut
                    signed = c.post("/api/v1/token", json={"login": name, "password": PASSWORD})
                    assert signed.status_code == 201, signed.text
                    me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {signed.json()['token']}"}).json()
                    assert me["admin"] is True
            finally:
                stop_web(proc)
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_accounts_to_share_with_and_writable_folders(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]
    a = web.sign_in(alice)
    found = a.get("/api/v1/accounts", params={"q": bob[:5]}).json()["accounts"]
    assert {"name": bob} in found and all(n["name"].startswith(bob[:5]) for n in found)
    assert a.get("/api/v1/accounts", params={"q": "nobody-has-this"}).json() == {"accounts": []}
    assert a.get(f"/api/v1/list/{alice}").json()["writable"] is True
    assert a.get("/api/v1/list").json()["writable"] is False  # the root is no one's to write


def test_a_temporary_password_only_lets_its_session_change_it(web: Web) -> None:
    carol = web.names[2]
    r, w = os.pipe()
    os.write(w, b"temporary one")
    os.close(w)
    try:
        res = admin(web.sock, "users", "passwd", carol, "--password-fd", str(r), "--temporary", input_fd=r)
    finally:
        os.close(r)
    assert res.returncode == 0, res.stdout + res.stderr
    c = web.sign_in(carol, "temporary one")
    me = c.get("/api/v1/me").json()
    assert me["password_temporary"] is True
    refused = c.get(f"/api/v1/list/{carol}")
    assert refused.status_code == 403 and refused.json()["error"] == "password_change_required"
    assert c.put("/api/v1/me/password", json={"old_password": "temporary one", "password": PASSWORD}).status_code == 200
    again = web.sign_in(carol)
    assert again.get("/api/v1/me").json()["password_temporary"] is False
    assert again.get(f"/api/v1/list/{carol}").status_code == 200
