"""The rest of the API over real TLS: folders and selections as one streamed zip, an
administrator's list of an account's files, per-token rate limits, CORS, and the web
process's own metrics."""

from __future__ import annotations

import io
import os
import ssl
import zipfile

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
