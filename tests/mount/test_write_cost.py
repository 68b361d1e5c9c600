"""What a block written costs the daemon beyond its bytes: its buffers are reused from the
heap (repfs.heap), not faulted in page by page for every block."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Repfs

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20


def minor_faults(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[7])  # field 10, minflt: every thread of the daemon


def write(path: Path, mib: int) -> None:
    chunk = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(mib):
            os.write(fd, chunk[i:] + chunk[:i])  # no two blocks alike
        os.fsync(fd)
    finally:
        os.close(fd)


def test_block_buffers_are_not_faulted_in_for_every_block(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory(block_size="4M")
    fs.mount("--cache-size", "256M", "--max-dirty", "64M")
    assert fs.proc is not None
    write(fs.mnt / "warm-up", 128)
    before = minor_faults(fs.proc.pid)
    write(fs.mnt / "big", 128)
    faults = minor_faults(fs.proc.pid) - before
    # Each 4 MiB buffer given back to the kernel and taken again is 1,024 faults, and a
    # block passes through several: 94,000 for this file before the trim threshold was
    # raised. Kept in the heap, the file costs tens to a few thousand, the number swinging
    # with how many blocks happen to be in flight at once (the warm-up is as large as the
    # file, so the heap has mostly reached its peak before counting). The bound is half a
    # buffer's pages per block: it fails as soon as any one buffer of each block is faulted.
    blocks, pages_per_buffer = 128 // 4, 4 * MiB // 4096
    assert faults < blocks * pages_per_buffer // 2, faults
