"""Fixtures of the mount tests: fresh account names (their host users deleted afterwards),
and a public mount with audit on and its admin socket."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Repfs, public_filesystem


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Fresh account names; the host users made for them are deleted afterwards."""
    made = [f"rt{secrets.token_hex(3)}" for _ in range(3)]
    yield made
    for name in made:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)


@pytest.fixture
def mounted(request: pytest.FixtureRequest) -> Iterator[tuple[Repfs, Path]]:
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    with public_filesystem(request.node, "--admin-socket", str(sock), "--audit") as fs:
        yield fs, sock
