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
import zipfile
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

    def progress() -> int:
        got = int(b.js("return window.repfsUppy.getState().totalProgress"))
        seen.add(got)
        return got

    def listed() -> bool:
        progress()
        return bool(b.all(f"tr[data-path='/{site.admin_name}/fifty.bin']"))

    b.until(listed, 120, "the upload finished and the file is listed")
    # the listing may refresh a moment before the uploader's last progress event
    b.until(lambda: progress() == 100, 30, "the progress reached 100")
    assert len(seen) >= 2, seen  # progress moved before it reached 100
    b.screenshot("04-upload-done")
    stored = site.fs.mnt / site.admin_name / "fifty.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_an_upload_resumes_after_a_reload(site: Site) -> None:
    b = site.browser
    big = site.work / "resume.bin"
    big.write_bytes(os.urandom(50 * MB))
    b.open(f"#/files/{site.admin_name}")
    b.shown("#listing")
    b.driver.set_network_conditions(offline=False, latency=5, download_throughput=100 * MB,  # type: ignore[attr-defined]
                                    upload_throughput=6 * MB)  # fmt: skip
    try:
        b.drop_files("#listing", big)
        progress = ("const f = window.repfsUppy.getFiles().find(f => f.name === 'resume.bin');"
                    "return f ? f.progress.bytesUploaded : 0")
        b.until(lambda: b.js(progress) > 12 * MB, 60, "a quarter of the upload sent")
        b.screenshot("05-upload-under-way")
        b.driver.refresh()  # the person reloads the page in the middle
        b.shown("#listing")
        received = site.received()
        # the page remembers the upload; the file is too big for it to keep, so it is added again
        b.until(lambda: b.js("return window.repfsUppy.getFiles().some(f => f.name === 'resume.bin')"), 30)
        b.screenshot("06-upload-after-reload")
        b.drop_files("#listing", big)
        b.click(".uppy-StatusBar-actionBtn--upload")  # "You can now resume the upload"
        b.until(lambda: b.all(f"tr[data-path='/{site.admin_name}/resume.bin']"), 120, "the resumed upload finished")
    finally:
        b.driver.delete_network_conditions()  # type: ignore[attr-defined]
    after = site.received() - received
    assert after < 50 * MB - 4 * MB, f"{after / MB:.1f} MiB sent after the reload: it started again"
    stored = site.fs.mnt / site.admin_name / "resume.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def answer_prompt(b: Browser, text: str | None) -> None:
    alert = b.until(lambda: b.driver.switch_to.alert, 10, "the page asks")
    if text is not None:
        alert.send_keys(text)
    alert.accept()


def test_a_reader_of_a_shared_folder_may_not_delete(site: Site) -> None:
    b = site.browser
    home = f"/{site.admin_name}"
    b.open(f"#/files/{site.admin_name}")
    b.click("#newfolder")
    answer_prompt(b, "proj")
    b.shown(f"tr[data-path='{home}/proj']")
    for name, size in (("a.txt", 1000), ("b.bin", 300_000)):
        (site.work / name).write_bytes(os.urandom(size))
    b.click(f"tr[data-path='{home}/proj'] a")
    b.shown("#listing")
    b.drop_files("#listing", site.work / "a.txt", site.work / "b.bin")
    b.shown(f"tr[data-path='{home}/proj/b.bin']", 60)
    b.shown(f"tr[data-path='{home}/proj/a.txt']", 60)

    b.open("#/admin/users")  # the administrator adds the second person, with a first password
    b.type("#new-name", site.user_name)
    b.type("#new-email", f"{site.user_name}@example.org")
    b.type("#new-p1", "set by the admin")
    b.type("#new-p2", "set by the admin")
    b.click("form button[type=submit]")
    b.shown(f"tr[data-user='{site.user_name}']")
    b.screenshot("07-users")

    b.open(f"#/files/{site.admin_name}")
    b.click(f"tr[data-path='{home}/proj'] input[type=checkbox]")
    b.click("#share")
    b.type("#share-user", site.user_name)
    b.find("#share-role").send_keys("reader")
    b.click("#share-form button[type=submit]")
    b.shown(f"#share-list tr[data-user='{site.user_name}']")
    b.screenshot("08-share-dialog")
    b.click("#dialog button.quiet")

    sign_out(b)
    sign_in(b, site.user_name, "set by the admin")
    b.shown("#old")  # a password an administrator set: change it first
    b.screenshot("09-first-sign-in")
    with site.client() as c:  # and the API agrees: nothing else until then
        token = c.post("/api/v1/token", json={"login": site.user_name, "password": "set by the admin"}).json()["token"]
        refused = c.get(f"/api/v1/list/{site.user_name}", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403 and refused.json()["error"] == "password_change_required", refused.text
    b.type("#old", "set by the admin")
    b.type("#p1", PASSWORD)
    b.type("#p2", PASSWORD)
    b.click("form button[type=submit]")
    b.shown("#listing")
    b.open("#/shared")
    b.click(f"#shared a[href='#/files/{site.admin_name}/proj']")
    b.shown(f"tr[data-path='{home}/proj/a.txt']")
    assert not b.all("#delete") and not b.all("#upload") and not b.all("#rename")  # read-only for a reader
    b.screenshot("10-shared-read-only")
    b.click("#share")  # who has access is shown; changing it is not offered to a reader
    b.shown("#share-readonly")
    b.screenshot("10-share-dialog-of-a-reader")
    assert not b.all("#share-form") and b.all(f"#share-list tr[data-user='{site.user_name}']")
    b.driver.execute_script("document.querySelector('#dialog').close()")
    forced = b.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const auth = 'Bearer ' + sessionStorage.getItem('repfs.token');"
        "fetch(arguments[0], {method: 'DELETE', headers: {Authorization: auth}})"
        ".then(r => done(r.status));", f"/api/v1/files{home}/proj/a.txt")  # fmt: skip
    assert forced == 403
    said = b.console_errors()  # the console tells of that refusal, and of nothing else
    assert said and all("403" in line for line in said), said
    assert (site.fs.mnt / site.admin_name / "proj" / "a.txt").exists()
    b.open("#/account")
    b.shown("#usage")
    b.screenshot("11-account")
    sign_out(b)
    b.screenshot("12-login")
    sign_in(b, site.admin_name, PASSWORD)
    b.shown("#listing")


def test_a_selection_downloads_as_one_zip(site: Site) -> None:
    b = site.browser
    home = f"/{site.admin_name}"
    b.open(f"#/files/{site.admin_name}")
    b.shown(f"tr[data-path='{home}/proj']")
    downloads = site.work / "downloads"
    for p in downloads.glob("*"):
        p.unlink()
    b.click(f"tr[data-path='{home}/proj'] input[type=checkbox]")
    b.click(f"tr[data-path='{home}/fifty.bin'] input[type=checkbox]")
    b.click("#download")
    got = b.until(lambda: [p for p in downloads.glob("*.zip")] if not list(downloads.glob("*.crdownload")) else [],
                  120, "the zip downloaded")  # fmt: skip
    with zipfile.ZipFile(got[0]) as z:
        names = sorted(n for n in z.namelist() if not n.endswith("/"))
        assert names == ["fifty.bin", "proj/a.txt", "proj/b.bin"], names
        for name in names:
            want = (site.fs.mnt / site.admin_name / name).read_bytes()
            assert hashlib.sha256(z.read(name)).digest() == hashlib.sha256(want).digest(), name


def test_pool_plots_move_with_writes_and_a_stopped_server_shows_down(site: Site) -> None:
    b = site.browser
    b.open("#/admin/pools")
    card = "[data-pool='{}']"
    b.shown(card.format("s3pool"))
    names = [str(e.get_attribute("data-pool")) for e in b.all(".pool")]
    assert sorted(names) == ["pool1", "pool2", "pool3", "s3pool"], names

    def used() -> dict[str, int]:
        return {n: int(b.find(card.format(n)).get_attribute("data-used") or 0) for n in names}

    b.until(lambda: all(int(b.find(card.format(n)).get_attribute("data-samples") or 0) >= 2 for n in names))
    start = used()
    with open(site.fs.mnt / site.admin_name / "plot.bin", "wb") as f:
        f.write(os.urandom(24 * MB))
        os.fsync(f.fileno())
    b.until(lambda: sum(used().values()) > sum(start.values()) + 24 * MB, 60, "the plots rose")
    b.screenshot("13-pools")
    assert b.find(card.format("s3pool")).get_attribute("data-state") == "up"

    site.weed.stop()
    with open(site.fs.mnt / site.admin_name / "after.bin", "wb") as f:  # writes find the server gone
        f.write(os.urandom(8 * MB))
        os.fsync(f.fileno())
    b.until(lambda: b.find(card.format("s3pool")).get_attribute("data-state") == "down", 60, "s3pool shown down")
    b.until(lambda: "down" in b.find(card.format("s3pool") + " ul").text, 30, "the change is in its history")
    b.screenshot("14-pool-down")
    assert not b.console_errors(), b.console_errors()


def test_pages_fit_a_phone(site: Site) -> None:
    b = site.browser
    b.driver.set_window_size(390, 844)
    try:
        views = (("files", f"#/files/{site.admin_name}", "#listing"), ("users", "#/admin/users", "#users"),
                 ("pools", "#/admin/pools", ".pool"), ("account", "#/account", "#usage"))  # fmt: skip
        for name, fragment, wait in views:
            b.open(fragment)
            b.shown(wait)
            b.screenshot(f"15-phone-{name}")
            assert not b.overflows(), f"the {name} page is wider than a phone"
    finally:
        b.driver.set_window_size(1280, 900)
