"""Fixtures of the admin tests: the mount fixtures of tests/conftest.py, the SeaweedFS
ones of tests/s3/conftest.py, and a short directory for admin sockets (a Unix socket's
path must fit in 108 bytes, and curl connects by path)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3.conftest import s3fs_factory, weed_factory  # noqa: F401 - fixtures used here too


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp"))
    path.chmod(0o755)  # other users (nobody, in the 403 test) may reach the socket inside
    yield path
    shutil.rmtree(path, ignore_errors=True)
