"""The kernel's read-ahead window for the mount (`--read-ahead`, repfs.fuse.readahead): set
on the mount's own device, so that a sequential reader's misses reach the daemon 1 MiB at a
time and read back right; 0 leaves the kernel's default."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import httpx
import pytest

from repfs.fuse.readahead import window_path
from tests.helpers import Repfs, wait_for
from tests.seaweed import free_ports

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


def fuse_reads(metrics: str) -> float:
    text = httpx.get(f"http://{metrics}/metrics", timeout=30).text
    m = re.search(r'^repfs_fuse_op_seconds_count\{op="read"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def window_kib(fs: Repfs) -> int:
    """The mount's window, once set: the daemon sets it as it starts serving, after the
    mount command has returned."""
    path = window_path(fs.mnt)
    assert path is not None
    return int(path.read_text())


def test_a_sequential_reader_is_served_in_1_mib_requests(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    metrics = f"127.0.0.1:{free_ports(1)[0]}"
    fs.mount("--metrics", metrics)
    assert wait_for(lambda: window_kib(fs) == 4096, timeout=10)  # the default, --read-ahead 4M
    data = os.urandom(8 * MiB)
    (fs.mnt / "big").write_bytes(data)
    fs.remount()  # cold: nothing of the file in the kernel's page cache
    assert wait_for(lambda: window_kib(fs) == 4096, timeout=10)  # a new mount: set again
    before = fuse_reads(metrics)
    got = bytearray()
    with open(fs.mnt / "big", "rb", buffering=0) as f:
        while chunk := f.read(MiB):
            got += chunk
    assert got == data
    requests = fuse_reads(metrics) - before
    assert requests <= 12, requests  # 8 of 1 MiB (and a few short ones); 64 with the kernel's 128 KiB


def test_read_ahead_0_leaves_the_kernel_default(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    fs.mount("--read-ahead", "0")
    (fs.mnt / "f").write_bytes(b"x" * 3000)  # the daemon serves: a window it set would be in place
    assert (fs.mnt / "f").read_bytes() == b"x" * 3000
    assert window_kib(fs) == 128
    fs.unmount()
    fs.mount("--read-ahead", "1M")
    assert wait_for(lambda: window_kib(fs) == 1024, timeout=10)
    assert (fs.mnt / "f").read_bytes() == b"x" * 3000
