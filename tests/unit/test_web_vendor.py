"""The web interface's vendored libraries are the files scripts/vendor-web.sh made (their
SHA-256 sums), each with its licence, and the page names only files that are there."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from repfs.web.pages import STATIC, Pages


def test_vendored_files_match_their_sums() -> None:
    vendor = STATIC / "vendor"
    sums = {}
    for line in (vendor / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    there = {p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert there == set(sums), there ^ set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    for folder in {Path(n).parent for n in sums}:
        assert (vendor / folder / "LICENSE.txt").is_file(), folder


def test_the_page_names_only_files_it_serves() -> None:
    pages = Pages()
    html = pages.files["index.html"][0].decode()
    named = re.findall(r'(?:src|href)="/ui/([^"]+)"', html)
    assert len(named) >= 6
    assert all(n in pages.files for n in named), [n for n in named if n not in pages.files]
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP allows none
