"""What files leave on the pools, each test with a mount of its own: holes store nothing,
and a file unlinked while open is freed (its objects deleted) at its last close."""

from __future__ import annotations

import errno
import os

import pytest

from tests.helpers import Repfs, opened, wait_for
from tests.mount.test_posix import BS, MiB, expect_errno, pattern


@pytest.mark.timeout(120)
def test_sparse_file_stores_almost_nothing(repfs: Repfs) -> None:
    before = repfs.pools_bytes()
    path = repfs.mnt / "sparse"
    with opened(path, os.O_CREAT | os.O_RDWR) as fd:
        os.pwrite(fd, b"middle", 50 * MiB + 3)
        os.pwrite(fd, b"end", 100 * MiB)
        os.fsync(fd)
    assert os.stat(path).st_size == 100 * MiB + 3
    grown = repfs.pools_bytes() - before
    assert 0 < grown < 256 * 1024, f"the pools grew by {grown} bytes for two tiny writes"
    with open(path, "rb") as f:
        for off in (0, BS - 1, 10 * MiB, 50 * MiB - 9000, 99 * MiB):
            f.seek(off)
            assert f.read(8192) == bytes(8192)
        f.seek(50 * MiB)
        assert f.read(16) == b"\0\0\0middle" + bytes(7)
        f.seek(100 * MiB - 2)
        assert f.read() == b"\0\0end"
    repfs.remount()
    with open(path, "rb") as f:
        f.seek(100 * MiB)
        assert f.read() == b"end"
    assert repfs.pools_bytes() - before < 256 * 1024


@pytest.mark.timeout(120)
@pytest.mark.standalone
def test_open_unlinked_file(repfs: Repfs) -> None:
    m = repfs.mnt
    keys_before = repfs.all_keys()
    data = pattern(4 * BS + 100, 4)
    fd = os.open(m / "ghost", os.O_CREAT | os.O_RDWR)
    try:
        os.write(fd, data)
        os.fsync(fd)
        ours = repfs.all_keys() - keys_before
        assert len(ours) >= 5, f"expected the file's blocks on the pools, found {len(ours)} new objects"
        os.unlink(m / "ghost")
        assert "ghost" not in os.listdir(m)
        expect_errno(errno.ENOENT, lambda: os.stat(m / "ghost"))
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, len(data) + 10, 0) == data
        more = pattern(2 * BS, 5)
        os.pwrite(fd, more, 3 * BS)
        os.fsync(fd)
        ours |= repfs.all_keys() - keys_before
        assert os.pread(fd, 10 * BS, 0) == data[: 3 * BS] + more
        assert os.fstat(fd).st_size == 5 * BS
        (m / "ghost").write_bytes(b"a new file under the old name")
    finally:
        os.close(fd)
    assert (m / "ghost").read_bytes() == b"a new file under the old name"

    def left() -> set[str]:
        return ours & repfs.all_keys()

    assert wait_for(lambda: not left(), timeout=40), f"{len(left())} objects of the deleted file stay on the pools"
    repfs.remount()
    assert (m / "ghost").read_bytes() == b"a new file under the old name"
    assert not ours & repfs.all_keys()
