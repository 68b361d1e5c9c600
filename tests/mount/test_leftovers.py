"""What a daemon killed with -9 leaves behind never stops the next mount."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Repfs

pytestmark = pytest.mark.timeout(120)


def test_a_plain_mount_after_kill9_of_one_with_its_admin_socket_elsewhere(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--admin-socket", str(sock))
    link = fs.fs_dir / "admin.sock"
    assert link.is_symlink() and Path(link.readlink()) == sock
    (fs.mnt / "f").write_bytes(b"kept")
    fs.kill9()
    assert link.is_symlink()  # the leftover: a link to a socket nobody serves
    fs.mount()  # the default socket is FS_DIR/admin.sock again
    assert link.is_socket() and not link.is_symlink()
    assert (fs.mnt / "f").read_bytes() == b"kept"
