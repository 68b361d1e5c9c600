"""The rest of the API over real TLS: folders and selections as one streamed zip, an
administrator's list of an account's files, per-token rate limits, CORS, and the web
process's own metrics."""

from __future__ import annotations

import hashlib
import io
import os
import ssl
import time
import zipfile
from typing import Any

import httpx
import pytest

from tests.helpers import run_as
from tests.mount.accounts_rig import ids
from tests.seaweed import free_ports
from tests.web.conftest import PASSWORD, Web, start_web, stop_web

pytestmark = pytest.mark.timeout(300)


def test_files_and_folders_as_one_zip(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]
    a, b = web.sign_in(alice), web.sign_in(bob)
    big = os.urandom(3 << 20)
    assert a.post(f"/api/v1/folders/{alice}/docs").status_code == 201
    assert a.post(f"/api/v1/folders/{alice}/docs/sub").status_code == 201
    assert a.put(f"/api/v1/files/{alice}/docs/big.bin", content=big).status_code == 201
    assert a.put(f"/api/v1/files/{alice}/docs/sub/b.txt", content=b"bee").status_code == 201
    assert a.put(f"/api/v1/files/{alice}/notes.txt", content=b"notes").status_code == 201
    run_as(*ids(alice), lambda: os.symlink("/etc/passwd", web.fs.mnt / alice / "docs" / "link"))

    wanted = {"path": [f"{alice}/docs", f"{alice}/notes.txt"], "name": "basket.zip"}
    res = a.get("/api/v1/zip", params=wanted)
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    assert "basket.zip" in res.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(res.content)) as z:
        assert sorted(z.namelist()) == ["docs/big.bin", "docs/sub/b.txt", "notes.txt"]  # no link
        assert z.read("docs/big.bin") == big and z.read("docs/sub/b.txt") == b"bee" and z.testzip() is None
    assert a.get("/api/v1/zip", params={"path": f"{alice}/nothing"}).status_code == 404
    assert a.get("/api/v1/zip").status_code == 400
    assert b.get("/api/v1/zip", params={"path": f"{alice}/docs"}).status_code == 403

    # an administrator's list of alice's files (bob is one)
    page = b.get(f"/api/v1/users/{alice}/files", params={"limit": 2}).json()
    assert page["count"] == 2 and page["more"] is True
    every = b.get(f"/api/v1/users/{alice}/files", params={"limit": 1000}).json()
    paths = {f["path"] for f in every["files"]}
    assert {f"/{alice}/notes.txt", f"/{alice}/docs/big.bin", f"/{alice}/docs/sub/b.txt"} <= paths
    assert a.get(f"/api/v1/users/{bob}/files").status_code == 403
    assert b.get("/api/v1/users/nobody-here/files").status_code == 404


def test_rate_limit_cors_and_metrics(web: Web) -> None:
    alice = web.names[0]
    state = web.fs.base / "web-limited"
    port = free_ports(1)[0]
    proc, url, _ = start_web(web.fs, state, "--rate", "1", "--burst", "3", "--metrics", f"127.0.0.1:{port}",
                             "--cors-origin", "https://app.example.org")  # fmt: skip
    try:
        trust = ssl.create_default_context(cafile=str(state / "cert.pem"))
        with httpx.Client(base_url=url, verify=trust, timeout=60) as c:
            token = c.post("/api/v1/token", json={"login": alice, "password": PASSWORD}).json()["token"]
            c.headers["Authorization"] = f"Bearer {token}"
            codes = [c.get("/api/v1/me").status_code for _ in range(6)]
            assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
            limited = c.get("/api/v1/me")
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert limited.json()["error"] == "rate_limited"

            allowed = c.options("/api/v1/me", headers={"Origin": "https://app.example.org",
                                                       "Access-Control-Request-Method": "GET"})  # fmt: skip
            assert allowed.headers.get("access-control-allow-origin") == "https://app.example.org"
            other = c.options("/api/v1/me", headers={"Origin": "https://evil.example.org",
                                                     "Access-Control-Request-Method": "GET"})  # fmt: skip
            assert "access-control-allow-origin" not in other.headers
            c.post("/api/v1/token", json={"login": alice, "password": "wrong"})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'repfs_web_requests_total{method="GET",route="/api/v1/me",status="429"}' in text
        assert 'repfs_web_requests_total{method="GET",route="/api/v1/me",status="200"} 3.0' in text
        assert "repfs_web_rate_limited_total" in text and "repfs_web_failed_logins_total 1.0" in text
        assert "repfs_web_request_seconds_bucket" in text
    finally:
        stop_web(proc)


def wait_listed(client: httpx.Client, digest: str, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a bound against a hang: the hasher reads at 16 MB/s
    while True:
        found = client.get("/api/v1/files", params={"sha256": digest}).json()
        if path in [f["path"] for f in found["files"]] or time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.2)


def test_files_by_content_hash(web: Web) -> None:
    """A file written in order is found by its SHA-256 once closed; one written out of order
    is hashed in the background; a change moves it to its new hash; another account finds
    only what it may read; the metadata holds no bare hash."""
    alice, carol = web.names[0], web.names[2]
    a, c = web.sign_in(alice), web.sign_in(carol)
    content = os.urandom(300_000)
    digest = hashlib.sha256(content).hexdigest()
    assert a.put(f"/api/v1/files/{alice}/by-hash.bin", content=content).status_code == 201
    found = a.get("/api/v1/files", params={"sha256": digest}).json()  # kept while written: known at once
    assert [f["path"] for f in found["files"]] == [f"/{alice}/by-hash.bin"], found
    assert found["files"][0]["size"] == len(content) and found["sha256"] == digest
    got = a.get(f"/api/v1/by-sha256/{digest.upper()}")
    assert got.status_code == 200 and got.content == content

    # out of order through the mount: second half first, then the first (the hasher reads it)
    def out_of_order() -> None:
        fd = os.open(web.fs.mnt / alice / "scrambled.bin", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, content[150_000:], 150_000)
            os.pwrite(fd, content[:150_000], 0)
        finally:
            os.close(fd)

    def in_two_appends() -> None:  # as tus chunks come: each closed, the next appended
        with open(web.fs.mnt / alice / "appended.bin", "wb") as f:
            f.write(content[:100_000])
        with open(web.fs.mnt / alice / "appended.bin", "ab") as f:
            f.write(content[100_000:])

    run_as(*ids(alice), in_two_appends)
    found = a.get("/api/v1/files", params={"sha256": digest}).json()  # the running hash went on: known at once
    assert sorted(f["path"] for f in found["files"]) == [f"/{alice}/appended.bin", f"/{alice}/by-hash.bin"], found
    assert a.delete(f"/api/v1/files/{alice}/appended.bin").status_code == 204

    run_as(*ids(alice), out_of_order)
    found = wait_listed(a, digest, f"/{alice}/scrambled.bin")
    assert sorted(f["path"] for f in found["files"]) == [f"/{alice}/by-hash.bin", f"/{alice}/scrambled.bin"], found

    # changed: its old hash no longer names it, its new one does (written in order again)
    more = content + b"one more line"
    assert a.put(f"/api/v1/files/{alice}/by-hash.bin", content=more).status_code in (200, 201)
    assert [f["path"] for f in a.get("/api/v1/files", params={"sha256": digest}).json()["files"]] == [
        f"/{alice}/scrambled.bin"]  # fmt: skip
    new = hashlib.sha256(more).hexdigest()
    assert [f["path"] for f in a.get("/api/v1/files", params={"sha256": new}).json()["files"]] == [
        f"/{alice}/by-hash.bin"]  # fmt: skip

    # another account: nothing it may not read (alice's namespace is private to her)
    assert c.get("/api/v1/files", params={"sha256": digest}).json()["files"] == []
    assert c.get(f"/api/v1/by-sha256/{digest}").status_code == 404
    assert a.get("/api/v1/files", params={"sha256": "xyz"}).status_code == 400
    assert a.get("/api/v1/by-sha256/" + "0" * 64).status_code == 404
    meta = (web.fs.fs_dir / "meta" / "data.mdb").read_bytes()
    assert bytes.fromhex(digest) not in meta and bytes.fromhex(new) not in meta  # only HMACs of them
