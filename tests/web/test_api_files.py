"""The REST API over real TLS to `repfs web` over a real mount: signing in and out, and
files read and written as the signed-in account, so the mount's rules decide (a reader's
PUT is 403 and changes nothing, a write past the quota is 507 with nothing stored, a
locked file is 423, a symbolic link never leads out of the mount)."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_as, wait_for
from tests.mount.accounts_rig import admin, ids
from tests.web.conftest import PASSWORD, Web, start_web, stop_web

pytestmark = pytest.mark.timeout(300)


def test_tls_with_the_made_certificate_and_no_plain_http(web: Web) -> None:
    res = web.client().get("/api/v1/health")
    assert res.status_code == 200 and res.json() == {"ok": True}
    assert res.http_version in ("HTTP/1.1", "HTTP/2")
    assert "SHA-256 fingerprint" in web.log_text()
    plain = web.url.replace("https://", "http://")
    try:  # TLS only: a plain request gets no answer, or an error, never the API
        r = httpx.get(plain + "/api/v1/health", timeout=10)
    except httpx.HTTPError:
        pass
    else:
        assert r.status_code >= 400 and "ok" not in r.text
    with pytest.raises((httpx.ConnectError, ssl.SSLError)):  # an unknown certificate is refused by a client
        httpx.get(web.url + "/api/v1/health", timeout=10, verify=True)
    doc = web.client().get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and "/api/v1/files/{path}" in doc["paths"]


def test_plain_http_only_with_insecure_http_and_warned(web: Web) -> None:
    state = web.fs.base / "web-plain"
    proc, url, log = start_web(web.fs, state, "--insecure-http")
    try:
        assert url.startswith("http://")
        assert httpx.get(url + "/api/v1/health", timeout=10).json() == {"ok": True}
        assert "for debugging only" in log.read_text()
        assert not (state / "cert.pem").exists()
    finally:
        stop_web(proc)


def test_sign_in_and_out_and_a_new_password_ends_every_session(web: Web) -> None:
    alice = web.names[0]
    anon = web.client()
    assert anon.get("/api/v1/me").status_code == 401
    bad = anon.post("/api/v1/token", json={"login": alice, "password": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
    nobody = anon.post("/api/v1/token", json={"login": "no-such-account", "password": "x"})
    assert nobody.status_code == 401 and nobody.json()["message"] == bad.json()["message"]  # nothing learned
    assert anon.post("/api/v1/token", json={"login": alice}).status_code == 400
    me = web.sign_in(alice)
    info = me.get("/api/v1/me").json()
    assert info["name"] == alice and "usage" in info and "password" not in info and "password_stamp" not in info
    by_email = web.sign_in(f"{alice}@example.org")
    assert me.delete("/api/v1/token").status_code == 204
    assert me.get("/api/v1/me").status_code == 401  # signed out
    assert by_email.get("/api/v1/me").status_code == 200  # another session goes on

    # a new password by an administrator ends the sessions at once
    r, w = os.pipe()
    os.write(w, b"a new one, long enough")
    os.close(w)
    try:
        assert admin(web.sock, "users", "passwd", alice, "--password-fd", str(r), input_fd=r).returncode == 0
    finally:
        os.close(r)
    assert by_email.get("/api/v1/me").status_code == 401
    again = web.sign_in(alice, "a new one, long enough")
    wrong = again.put("/api/v1/me/password", json={"old_password": "nope", "password": PASSWORD})
    assert wrong.status_code == 403
    assert again.put("/api/v1/me/password", json={"old_password": "a new one, long enough",
                                                  "password": PASSWORD}).status_code == 200  # fmt: skip
    assert again.get("/api/v1/me").status_code == 401  # its own session ends with it
    # a disabled account: its sessions end
    s = web.sign_in(alice)
    assert admin(web.sock, "users", "disable", alice).returncode == 0
    assert s.get("/api/v1/me").status_code == 401
    assert admin(web.sock, "users", "enable", alice).returncode == 0
    assert "API sign-in refused" in web.log_text()


def test_files_are_read_and_written_as_the_account(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]
    a, b = web.sign_in(alice), web.sign_in(bob)
    data = os.urandom(300_000)
    res = a.put(f"/api/v1/files/{alice}/docs-not-there/x", content=b"x")
    assert res.status_code == 404 and res.json()["error"] == "not_found"
    assert a.post(f"/api/v1/folders/{alice}/docs").status_code == 201
    assert a.post(f"/api/v1/folders/{alice}/docs").status_code == 409
    res = a.put(f"/api/v1/files/{alice}/docs/report.bin", content=data)
    assert res.status_code == 201 and res.json()["size"] == len(data), res.text
    assert a.put(f"/api/v1/files/{alice}/docs/report.bin", content=data).status_code == 200  # replaced
    on_mount = web.fs.mnt / alice / "docs" / "report.bin"
    assert on_mount.read_bytes() == data and on_mount.stat().st_uid == ids(alice)[0]

    got = a.get(f"/api/v1/files/{alice}/docs/report.bin")
    assert got.status_code == 200 and got.content == data and got.headers["content-length"] == str(len(data))
    etag = got.headers["etag"]
    assert a.get(f"/api/v1/files/{alice}/docs/report.bin", headers={"If-None-Match": etag}).status_code == 304
    part = a.get(f"/api/v1/files/{alice}/docs/report.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = a.get(f"/api/v1/files/{alice}/docs/report.bin", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    over = a.get(f"/api/v1/files/{alice}/docs/report.bin", headers={"Range": f"bytes={len(data)}-"})
    assert over.status_code == 416

    for i in range(25):
        assert a.put(f"/api/v1/files/{alice}/docs/f{i:02}", content=b"y" * i).status_code == 201
    page = a.get(f"/api/v1/list/{alice}/docs", params={"offset": 5, "limit": 10}).json()
    assert page["total"] == 26 and [e["name"] for e in page["entries"]] == [f"f{i:02}" for i in range(5, 15)]
    by_size = a.get(f"/api/v1/list/{alice}/docs", params={"sort": "size", "order": "desc", "limit": 1}).json()
    assert by_size["entries"][0]["name"] == "report.bin"
    assert a.get(f"/api/v1/list/{alice}/docs", params={"sort": "colour"}).status_code == 400
    st = a.get(f"/api/v1/stat/{alice}/docs/f03").json()
    assert st["kind"] == "file" and st["size"] == 3
    moved = a.post("/api/v1/move", json={"from": f"{alice}/docs/f03", "to": f"{alice}/docs/g03"})
    assert moved.status_code == 200 and moved.json()["path"] == f"/{alice}/docs/g03"
    exists = a.post("/api/v1/move", json={"from": f"{alice}/docs/f04", "to": f"{alice}/docs/g03"})
    assert exists.status_code == 409
    assert a.delete(f"/api/v1/files/{alice}/docs/g03").status_code == 204
    assert a.delete(f"/api/v1/files/{alice}/docs").status_code == 409  # not empty
    assert a.get(f"/api/v1/files/{alice}/../etc/passwd").status_code in (400, 404)
    assert a.get("/api/v1/no/such/endpoint").json()["error"] == "not_found"

    # bob: alice's namespace is hers
    assert b.get(f"/api/v1/files/{alice}/docs/report.bin").status_code == 403
    assert b.get(f"/api/v1/list/{alice}").status_code == 403
    assert b.put(f"/api/v1/files/{alice}/intruder", content=b"x").status_code == 403
    assert not (web.fs.mnt / alice / "intruder").exists()
    # shared with bob as reader: he reads, and his PUT is 403 and changes nothing
    assert admin(web.sock, "shares", "add", str(web.fs.mnt / alice / "docs"), bob, "--role", "reader").returncode == 0
    assert b.get(f"/api/v1/files/{alice}/docs/report.bin").content == data
    refused = b.put(f"/api/v1/files/{alice}/docs/report.bin", content=b"overwritten")
    assert refused.status_code == 403, refused.text
    assert on_mount.read_bytes() == data
    assert not [p for p in (web.fs.mnt / alice / "docs").iterdir() if p.name.startswith(".repfs-put-")]

    # the audit log names the account and the path of an API download
    assert wait_for(lambda: any(
        (rec := _audit(line)) and rec.get("account") == bob and rec.get("op") == "open"
        and rec.get("path") == f"/{alice}/docs/report.bin" for line in web.fs.log_text().splitlines()), 10)  # fmt: skip


def _audit(line: str) -> dict[str, object] | None:
    if "repfs.audit" not in line:
        return None
    try:
        value: dict[str, object] = json.loads(line[line.index("{") :])
    except ValueError:
        return None
    return value


def test_a_write_past_the_quota_is_507_and_a_locked_file_423(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]
    a = web.sign_in(alice)
    assert a.post(f"/api/v1/folders/{alice}/q").status_code == 201
    used = int(a.get("/api/v1/me").json()["usage"]["bytes"])
    assert admin(web.sock, "users", "set", alice, "--quota", str(used + 100_000)).returncode == 0
    try:
        big = a.put(f"/api/v1/files/{alice}/q/big", content=os.urandom(200_000))
        assert big.status_code == 507 and big.json()["error"] == "quota_exceeded", big.text
        assert list((web.fs.mnt / alice / "q").iterdir()) == []  # nothing stored, no leftover
        assert int(a.get("/api/v1/me").json()["usage"]["bytes"]) == used
    finally:
        assert admin(web.sock, "users", "set", alice, "--quota", "0").returncode == 0

    # a file alice is writing on the mount is locked against bob (an editor of the folder)
    team = web.fs.mnt / alice / "team"
    def make() -> None:
        team.mkdir()
        (team / "plan.txt").write_bytes(b"v1")

    run_as(*ids(alice), make)
    assert admin(web.sock, "shares", "add", str(team), bob, "--role", "editor").returncode == 0
    b = web.sign_in(bob)
    # an editor may not replace a file alice made (the shares' rule): the old file stays whole
    replaced = b.put(f"/api/v1/files/{alice}/team/plan.txt", content=b"bob's")
    assert replaced.status_code == 403 and "may not be replaced" in replaced.json()["message"], replaced.text
    assert b.put(f"/api/v1/files/{alice}/team/bobs.txt", content=b"bob's").status_code == 201  # his own: yes

    def hold_open_and_ask() -> tuple[int, str]:
        fd = os.open(team / "plan.txt", os.O_WRONLY)
        try:
            res = b.put(f"/api/v1/files/{alice}/team/plan.txt", content=b"v2 by bob")
            return res.status_code, res.json()["error"]
        finally:
            os.close(fd)

    assert run_as(*ids(alice), hold_open_and_ask) == (423, "locked")
    assert (team / "plan.txt").read_bytes() == b"v1"
    assert not [p for p in team.iterdir() if p.name.startswith(".repfs-put-")]


def test_a_symbolic_link_never_leads_out_of_the_mount(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    home = web.fs.mnt / alice
    def links() -> None:
        os.symlink("/etc/passwd", home / "escape")
        os.symlink("/etc", home / "etc")

    run_as(*ids(alice), links)
    entry = a.get(f"/api/v1/stat/{alice}/escape").json()
    assert entry["kind"] == "symlink" and entry["target"] == "/etc/passwd"
    res = a.get(f"/api/v1/files/{alice}/escape")
    assert res.status_code == 409 and b"root:" not in res.content
    assert a.get(f"/api/v1/files/{alice}/etc/passwd").status_code in (404, 409)
    assert a.get(f"/api/v1/list/{alice}/etc").status_code in (404, 409)
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() not in a.get(f"/api/v1/list/{alice}").text


def test_shares_by_the_api_and_the_administrators_routes(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]  # bob is in the admin group
    a, b = web.sign_in(alice), web.sign_in(bob)
    assert a.post(f"/api/v1/folders/{alice}/album").status_code == 201
    assert a.put(f"/api/v1/files/{alice}/album/p1.jpg", content=b"jpeg").status_code == 201
    assert b.get(f"/api/v1/files/{alice}/album/p1.jpg").status_code == 403
    made = a.post("/api/v1/shares", json={"path": f"{alice}/album", "user": bob, "role": "reader"})
    assert made.status_code == 201 and made.json()["role"] == "reader", made.text
    assert f"/{alice}/album" in [s["path"] for s in b.get("/api/v1/shares").json()["given"]]
    assert b.get(f"/api/v1/files/{alice}/album/p1.jpg").content == b"jpeg"
    refused = b.post("/api/v1/shares", json={"path": f"{alice}/album", "user": web.names[2], "role": "reader"})
    assert refused.status_code == 403  # a reader shares nothing on
    assert b.get(f"/api/v1/info/{alice}/album").json()["may_share"] is False  # and is told so (the page asks)
    assert a.get(f"/api/v1/info/{alice}/album").json()["may_share"] is True
    assert a.delete("/api/v1/shares", params={"path": f"{alice}/album", "user": bob}).status_code == 200
    assert b.get(f"/api/v1/files/{alice}/album/p1.jpg").status_code == 403

    # administrators: bob is one, alice is not
    assert a.get("/api/v1/users").status_code == 403
    users = {u["name"]: u for u in b.get("/api/v1/users").json()["users"]}
    assert {alice, bob} <= set(users) and users[alice]["usage"]["files"] >= 2
    assert b.patch(f"/api/v1/users/{alice}", json={"quota": "1G"}).json()["quota"]["max_bytes"] == 1 << 30
    assert b.post(f"/api/v1/users/{alice}/disable").json()["disabled"] is True
    assert a.get("/api/v1/me").status_code == 401  # her session ended with it
    assert b.post(f"/api/v1/users/{alice}/enable").json()["disabled"] is False
    a = web.sign_in(alice)
    assert b.patch(f"/api/v1/users/{alice}", json={"quota": 0}).status_code == 200
    assert b.post(f"/api/v1/users/{alice}/explode").status_code == 404
    pools = b.get("/api/v1/pools").json()["pools"]
    assert len(pools) == 3 and {p["state"] for p in pools} == {"up"}
    assert "alerts" in b.get("/api/v1/status").json()
    assert a.get("/api/v1/pools").status_code == 403
    history = b.get("/api/v1/pools/history", params={"pool": "pool1"}).json()  # what the pool plots are drawn from
    assert [s["state"] for s in history["states"]][:1] == ["up"] and history["states"][0]["reason"] == "mounted"
    assert b.get("/api/v1/pools/history", params={"pool": "nosuch"}).status_code == 404
    assert a.get("/api/v1/pools/history").status_code == 403



def test_hostile_requests_get_a_clear_answer_and_hold_up_nothing(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    run_as(*ids(alice), lambda: os.mkfifo(web.fs.mnt / alice / "pipe"))
    fifo = a.get(f"/api/v1/files/{alice}/pipe", timeout=20)  # opened without blocking: no worker waits for a writer
    assert fifo.status_code == 409 and fifo.json()["error"] == "is_a_folder"
    assert a.get(f"/api/v1/files/{alice}/a%00b").status_code == 400
    assert a.get(f"/api/v1/list/{alice}", params={"offset": "²"}).status_code == 400
    huge = web.client().post("/api/v1/token", content=b"{" + b" " * (2 << 20) + b"}",
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert huge.status_code == 413
    long_name = web.client().post("/api/v1/token", json={"login": "x" * 10_000, "password": "y"})
    assert long_name.status_code == 400
    assert a.get("/api/v1/me").status_code == 200  # the process goes on
