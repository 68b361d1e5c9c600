"""The web interface in a real browser (headless Chromium): the first administrator,
uploads by drag and drop with progress and a resume after a reload, a share that is
read-only for its grantee, a zip of a selection, and the pools' plots and states moving
with the filesystem. Every page is saved as a screenshot (artifacts/screenshots/).

The tests run in order on one filesystem, as one person's afternoon would: each starts
from where the last left off (the first administrator made in the first is used after)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import Repfs, public_filesystem
from tests.s3.rig import write_credentials
from tests.seaweed import WeedServer, free_ports
from tests.web.browser import Browser
from tests.web.conftest import start_web, stop_web

pytestmark = pytest.mark.timeout(300)

PASSWORD = "a long first password"
MB = 1 << 20


@dataclass
class Site:
    fs: Repfs
    sock: Path
    url: str
    cert: Path
    metrics: str
    browser: Browser
    admin_name: str
    user_name: str
    weed: WeedServer
    work: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.cert)), timeout=60)

    def received(self) -> float:
        """Bytes the web process received in request bodies (its Prometheus metrics)."""
        text = httpx.get(f"http://{self.metrics}/metrics", timeout=30).text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("repfs_web_received_bytes_total"))  # fmt: skip


def admin_call(sock: Path, method: str, target: str, body: object = None) -> tuple[int, object]:
    cmd = ["curl", "-sS", "--unix-socket", str(sock), "-X", method, "-w", "\n%{http_code}", f"http://repfs{target}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text) if text else None


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    group = f"wpa{secrets.token_hex(3)}"
    admin_name, user_name = f"wpadm{secrets.token_hex(2)}", f"wpusr{secrets.token_hex(2)}"
    work = Path(tempfile.mkdtemp(prefix="repfs-pages-"))
    subprocess.run(["groupadd", group], check=True, timeout=30)
    weed = WeedServer(work / "weed")
    try:
        weed.start()
        with public_filesystem(None, "--admin-socket", str(sock), "--audit", "--history-interval", "1",
                               "--usage-interval", "1", "--admin-group", group) as fs:  # fmt: skip
            bucket = weed.make_bucket()
            creds = write_credentials(work / "s3.credentials", weed)
            code, answer = admin_call(sock, "POST", "/v1/pools", {"name": "s3pool", "url": weed.url(bucket),
                                                                  "credentials_file": str(creds)})  # fmt: skip
            assert code == 201, answer
            metrics = f"127.0.0.1:{free_ports(1)[0]}"
            state = fs.base / "web"
            proc, url, log = start_web(fs, state, "--admin-socket", str(sock), "--admin-group", group,
                                       "--metrics", metrics)  # fmt: skip
            browser = Browser(url, state / "cert.pem", work / "profile", work / "downloads")
            try:
                yield Site(fs, sock, url, state / "cert.pem", metrics, browser, admin_name, user_name, weed, work)
            finally:
                browser.close()
                stop_web(proc)
                print(log.read_text(errors="replace")[-3000:])
    finally:
        weed.stop()
        for name in (admin_name, user_name):
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sock.parent, ignore_errors=True)


def sign_in(b: Browser, name: str, password: str) -> None:
    b.open("#/login")
    b.type("#login", name)
    b.type("#password", password)
    b.click("form button[type=submit]")


def sign_out(b: Browser) -> None:
    b.click("#signout")
    b.shown("#login")


def test_first_administrator_is_made_in_the_browser(site: Site) -> None:
    b = site.browser
    b.open()
    b.shown("#p2")  # the page finds no administrator and offers to make one
    b.screenshot("01-setup")
    b.type("#name", site.admin_name)
    b.type("#email", f"{site.admin_name}@example.org")
    b.type("#p1", PASSWORD)
    b.type("#p2", PASSWORD + "x")
    b.click("form button[type=submit]")
    b.until(lambda: "differ" in b.find("[role=alert]").text, message="mismatch refused")
    assert not b.all("#listing")
    b.screenshot("02-setup-mismatch")
    b.type("#p2", PASSWORD)
    b.click("form button[type=submit]")
    b.shown("#listing")
    assert b.find("#who").text == site.admin_name
    b.until(lambda: b.shown("nav a[data-view=pools]"))  # an administrator: the admin views are offered
    with site.client() as c:  # the door is shut once an administrator exists
        assert c.get("/api/v1/setup").json()["needed"] is False
        again = c.post("/api/v1/setup", json={"name": "late", "email": "late@example.org", "password": PASSWORD})
        assert again.status_code == 409, again.text
    assert not b.console_errors(), b.console_errors()
    b.screenshot("03-files-empty")


def test_upload_by_drag_and_drop_shows_progress_to_the_end(site: Site) -> None:
    b = site.browser
    big = site.work / "fifty.bin"
    big.write_bytes(os.urandom(50 * MB))
    b.open(f"#/files/{site.admin_name}")
    b.shown("#listing")
    b.drop_files("#listing", big)
    b.shown("#uploader .uppy-Dashboard")
    seen = set()

    def done() -> bool:
        seen.add(int(b.js("return window.repfsUppy.getState().totalProgress")))
        return bool(b.all(f"tr[data-path='/{site.admin_name}/fifty.bin']"))

    b.until(done, 120, "the upload finished and the file is listed")
    assert 100 in seen and len(seen) >= 2, seen  # progress moved, and reached 100
    b.screenshot("04-upload-done")
    stored = site.fs.mnt / site.admin_name / "fifty.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
