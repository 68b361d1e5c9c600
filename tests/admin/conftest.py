"""Fixtures of the admin tests: the mount fixtures of tests/conftest.py, the SeaweedFS
ones of tests/s3/conftest.py, a short directory for admin sockets (a Unix socket's
path must fit in 108 bytes, and curl connects by path), and a PREFIX that
scripts/install-files.sh filled as it fills /usr/local."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFIX with what the user install puts in /usr/local (and /sbin, as PREFIX/sbin): the
    commands linked, man pages, bash completion and documents (scripts/install-files.sh, run
    for real)."""
    prefix = tmp_path_factory.mktemp("prefix")
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-files.sh")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "REPFS_PREFIX": str(prefix), "REPFS_SBIN": str(prefix / "sbin"), "REPFS_VENV": str(VENV)},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return prefix
