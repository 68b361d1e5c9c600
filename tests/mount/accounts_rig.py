"""What the account tests share: `repfs-admin` on an admin socket, accounts added with
host users made for them (the fixtures `names` and `mounted` are in conftest.py)."""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
from pathlib import Path


def admin(sock: Path, *args: str, input_fd: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repfs.admin.cli", "--socket", str(sock), *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        pass_fds=(input_fd,) if input_fd is not None else (),
    )  # fmt: skip


def add(sock: Path, name: str, *extra: str) -> dict[str, object]:
    res = admin(sock, "users", "add", name, "--email", f"{name}@example.org", "--create-system-user", *extra, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    info: dict[str, object] = json.loads(res.stdout)
    return info


def ids(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid
