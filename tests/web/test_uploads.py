"""Resumable uploads (tus 1.0) over real TLS to `repfs web` over a real mount: chunks with
checksums (a bad one refused and resent alone), an upload cut mid-chunk, across a killed
`repfs web` and a restarted mount daemon, four parts in parallel joined into one, the
quota checked at creation, one path uploaded by two accounts, termination and expiry."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import wait_for
from tests.mount.accounts_rig import admin
from tests.web.conftest import Web, start_web, stop_web

pytestmark = pytest.mark.timeout(300)

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


def meta(**items: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items())


def create(c: httpx.Client, length: int, **items: str) -> str:
    res = c.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": meta(**items)})
    assert res.status_code == 201, res.text
    return urlsplit(res.headers["location"]).path


def offset(c: httpx.Client, url: str) -> int:
    res = c.head(url, headers=TUS)
    assert res.status_code == 200, res.status_code
    return int(res.headers["upload-offset"])


def send(c: httpx.Client, url: str, at: int, data: bytes, checksum: bytes | None = None) -> httpx.Response:
    headers = {**PATCH, "Upload-Offset": str(at)}
    if checksum is not None:
        headers["Upload-Checksum"] = "sha256 " + base64.b64encode(checksum).decode()
    return c.patch(url, headers=headers, content=data)


def staged(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".repfs-upload-"))


def test_chunks_with_checksums_and_a_bad_chunk_resent_alone(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    opts = a.options("/api/v1/uploads")
    assert opts.status_code == 204 and "checksum" in opts.headers["tus-extension"]
    assert "sha256" in opts.headers["tus-checksum-algorithm"] and opts.headers["tus-version"] == "1.0.0"
    data = os.urandom(3 << 20)
    url = create(a, len(data), folder=alice, filename="video.bin")
    assert staged(web.fs.mnt / alice) == [f".repfs-upload-{url.rsplit('/', 1)[1]}"]
    assert a.head(url).status_code == 412  # no Tus-Resumable
    assert a.patch(url, headers={**TUS, "Upload-Offset": "0"}, content=b"x").status_code == 415
    assert send(a, url, 5, b"x").status_code == 409  # not where the upload is
    one = 1 << 20
    assert send(a, url, 0, data[:one], hashlib.sha256(data[:one]).digest()).status_code == 204
    bad = send(a, url, one, data[one : 2 * one], hashlib.sha256(b"something else").digest())
    assert bad.status_code == 460 and bad.headers["tus-resumable"] == "1.0.0"
    assert offset(a, url) == one  # the bad chunk counts for nothing
    assert send(a, url, one, data[one : 2 * one], hashlib.sha256(data[one : 2 * one]).digest()).status_code == 204
    last = send(a, url, 2 * one, data[2 * one :])
    assert last.status_code == 204 and last.headers["upload-offset"] == str(len(data))
    target = web.fs.mnt / alice / "video.bin"
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert staged(web.fs.mnt / alice) == []
    # the resent chunk was out of order for the running hash: the hasher reads the file
    deadline = time.monotonic() + 60  # a bound against a hang
    while True:
        found = a.get("/api/v1/files", params={"sha256": hashlib.sha256(data).hexdigest()}).json()
        if found["files"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [f["path"] for f in found["files"]] == [f"/{alice}/video.bin"], found
    assert a.get(f"/api/v1/files/{alice}/video.bin").content == data


def cut_patch(web: Web, token: str, url: str, at: int, data: bytes, declared: int) -> None:
    """A PATCH that says `declared` bytes, sends `data` and closes the connection."""
    host, port = urlsplit(web.url).hostname or "", urlsplit(web.url).port or 443
    ctx = ssl.create_default_context(cafile=str(web.cert))
    with socket.create_connection((host, port), timeout=30) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        head = (f"PATCH {url} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: {at}\r\nContent-Length: {declared}\r\n\r\n")  # fmt: skip
        s.sendall(head.encode() + data)
        time.sleep(0.5)  # let the bytes arrive before the cut (what is measured is what arrived)


def test_an_upload_goes_on_after_a_cut_a_killed_web_and_a_restarted_daemon(web: Web) -> None:
    alice = web.names[0]
    res = web.client().post("/api/v1/token", json={"login": alice, "password": "correct horse battery staple"})
    token = res.json()["token"]
    a = web.client(token)
    data = os.urandom(8 << 20)
    url = create(a, len(data), path=f"{alice}/resumed.bin")
    mb = 1 << 20
    cut_patch(web, token, url, 0, data[: 2 * mb], len(data))
    assert wait_for(lambda: offset(a, url) > 0, 10)
    at = offset(a, url)
    assert 0 < at <= 2 * mb  # what arrived and is durable; never more
    assert send(a, url, at, data[at : 4 * mb]).status_code == 204

    # repfs web killed: the upload and the session are kept in its state folder
    web.proc.kill()
    web.proc.wait(timeout=30)
    web.proc, web.url, web.log = start_web(web.fs, web.state, *web.args)
    a = web.client(token)
    assert offset(a, url) == 4 * mb

    # the mount daemon restarted: the staged bytes were durable
    web.fs.unmount()
    down = a.head(url, headers=TUS)
    assert down.status_code == 503  # the mount is away: no offset is claimed
    web.fs.mount(*web.fs.mount_args)
    assert wait_for(lambda: a.head(url, headers=TUS).status_code == 200, 20)
    assert offset(a, url) == 4 * mb
    assert send(a, url, 4 * mb, data[4 * mb :]).status_code == 204
    assert hashlib.sha256((web.fs.mnt / alice / "resumed.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_four_parts_in_parallel_joined_into_one(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    data = os.urandom(4 << 20)
    quarter = len(data) // 4
    parts = [data[i * quarter : (i + 1) * quarter] for i in range(4)]
    urls: list[str] = []
    for part in parts:
        res = a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(len(part)), "Upload-Concat": "partial"})
        assert res.status_code == 201, res.text
        urls.append(urlsplit(res.headers["location"]).path)
    results: list[int] = []

    def upload(i: int) -> None:
        c = web.sign_in(alice)
        results.append(send(c, urls[i], 0, parts[i], hashlib.sha256(parts[i]).digest()).status_code)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [204] * 4
    final = a.post("/api/v1/uploads", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls),
                                               "Upload-Metadata": meta(path=f"{alice}/joined.bin")})  # fmt: skip
    assert final.status_code == 201, final.text
    assert (web.fs.mnt / alice / "joined.bin").read_bytes() == data
    assert list((web.fs.mnt / alice / ".repfs-uploads").iterdir()) == []  # the parts are gone
    found = a.get("/api/v1/files", params={"sha256": hashlib.sha256(data).hexdigest()}).json()
    assert [f["path"] for f in found["files"]] == [f"/{alice}/joined.bin"], found  # joined in order: known at once
    assert a.head(urls[0], headers=TUS).status_code == 404


def test_quota_at_creation_one_path_two_accounts_termination_and_expiry(web: Web) -> None:
    alice, bob = web.names[0], web.names[1]
    a, b = web.sign_in(alice), web.sign_in(bob)
    home = web.fs.mnt / alice
    used = int(a.get("/api/v1/me").json()["usage"]["bytes"])
    assert admin(web.sock, "users", "set", alice, "--quota", str(used + (1 << 20))).returncode == 0
    try:
        res = a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(2 << 20),
                                                 "Upload-Metadata": meta(path=f"{alice}/too-big")})  # fmt: skip
        assert res.status_code == 507 and res.json()["error"] == "quota_exceeded"
        assert staged(home) == [] and not (home / "too-big").exists()
    finally:
        assert admin(web.sock, "users", "set", alice, "--quota", "0").returncode == 0

    assert a.post(f"/api/v1/folders/{alice}/shared").status_code == 201
    assert admin(web.sock, "shares", "add", str(home / "shared"), bob, "--role", "editor").returncode == 0
    first = create(a, 100, path=f"{alice}/shared/same.txt")
    second = b.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "100",
                                               "Upload-Metadata": meta(path=f"{alice}/shared/same.txt")})  # fmt: skip
    assert second.status_code == 423 and second.json()["error"] == "locked"
    assert b.head(first, headers=TUS).status_code == 404  # alice's upload is hers
    assert a.delete(first, headers=TUS).status_code == 204  # termination: the bytes go
    assert staged(home / "shared") == []
    assert a.head(first, headers=TUS).status_code == 404
    again = create(b, 3, path=f"{alice}/shared/same.txt")  # free now
    assert send(b, again, 0, b"bob").status_code == 204
    assert (home / "shared" / "same.txt").read_bytes() == b"bob"
    bad = a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "5"})
    assert bad.status_code == 400 and "names no target" in bad.json()["message"]

    # expiry: a second web process that keeps unfinished uploads two seconds
    state = web.fs.base / "web-short"
    proc, url, _ = start_web(web.fs, state, "--upload-expiry", "2")
    try:
        trust = ssl.create_default_context(cafile=str(state / "cert.pem"))
        with httpx.Client(base_url=url, verify=trust, timeout=60) as c:
            token = c.post("/api/v1/token", json={"login": alice, "password": "correct horse battery staple"})
            c.headers["Authorization"] = f"Bearer {token.json()['token']}"
            short = create(c, 10, path=f"{alice}/short.txt")
            assert staged(home) != []
            made = time.time()
            assert wait_for(lambda: time.time() > made + 2.5, 5)
            assert c.head(short, headers=TUS).status_code == 404
            assert staged(home) == []
    finally:
        stop_web(proc)
