"""A real browser for the web interface tests: Debian's headless Chromium driven through
chromium-driver by Selenium. It trusts exactly the certificate `repfs web` made (its key's
SPKI hash), so the pages are reached over real TLS; screenshots go to the artifacts
folder (REPFS_ARTIFACTS, default artifacts/ in the repository) for people to look at."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("REPFS_ARTIFACTS", ROOT / "artifacts")) / "screenshots"
WAIT = 30.0  # seconds a page gets to show what a step waits for

# Drop the files of a hidden <input type=file> on an element, as a person dragging them
# from a file manager does: dragenter, dragover, drop with a DataTransfer holding them.
DROP = """
const [target, input] = arguments;
const data = new DataTransfer();
for (const f of input.files) data.items.add(f);
for (const type of ["dragenter", "dragover", "drop"]) {
  target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
}
input.remove();
"""


def spki_hash(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browser:
    def __init__(self, base_url: str, cert: Path, profile: Path, downloads: Path) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
        opts = Options()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}",
                    f"--ignore-certificate-errors-spki-list={spki_hash(cert)}"):  # fmt: skip
            opts.add_argument(arg)
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})  # fmt: skip
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)
        self.base = base_url
        self.downloads = downloads

    def close(self) -> None:
        with contextlib.suppress(WebDriverException):
            self.driver.quit()

    # --- steps --------------------------------------------------------------------------
    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.base}/{fragment}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, what: Callable[[], Any], timeout: float = WAIT, message: str = "") -> Any:
        """What `what()` gives once it is truthy (errors meanwhile count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = what()
                if last:
                    return last
            except WebDriverException as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s: {message or what} (last: {last!r})\n{self.text()}")

    def shown(self, css: str, timeout: float = WAIT) -> WebElement:
        found: WebElement = self.until(lambda: next((e for e in self.all(css) if e.is_displayed()), None), timeout,
                                       f"{css} shown")  # fmt: skip
        return found

    def text(self) -> str:
        try:
            return str(self.js("return document.body.innerText"))
        except WebDriverException:
            return ""

    def type(self, css: str, value: str) -> None:
        element = self.shown(css)
        element.clear()
        element.send_keys(value)

    def click(self, css: str) -> None:
        """Click what `css` names (found again if the page redrew it meanwhile)."""

        def clicked() -> bool:
            self.shown(css).click()
            return True

        self.until(clicked, message=f"{css} clicked")

    def drop_files(self, target_css: str, *paths: Path) -> None:
        """Drag files from "the desktop" onto an element of the page."""
        self.js("const i = document.createElement('input'); i.type = 'file'; i.multiple = true; i.id = 'test-drop';"
                "i.style.display = 'none'; document.body.append(i);")  # fmt: skip
        self.find("#test-drop").send_keys("\n".join(str(p) for p in paths))
        self.js(DROP, self.find(target_css), self.find("#test-drop"))

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """What the page's console said at level SEVERE (CSP refusals, script errors)."""
        said: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(e["message"]) for e in said if e.get("level") == "SEVERE"]

    def overflows(self) -> bool:
        return bool(self.js("return document.documentElement.scrollWidth > window.innerWidth + 1"))
