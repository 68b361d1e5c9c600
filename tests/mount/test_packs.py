"""Packs through a real mount (`--pack-max`, off by default while they are being built):
an fsync'd 64 KiB file costs at most 2 object PUTs (the pool request metrics count them),
every fsync'd file survives kill -9, reads back with packs off, and fsck finds nothing."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

import httpx
import pytest

from tests.helpers import Repfs, opened, run_repfs
from tests.seaweed import free_ports

pytestmark = pytest.mark.timeout(180)

PACKET = 64 * 1024


def puts(metrics: str) -> float:
    text = httpx.get(f"http://{metrics}/metrics", timeout=30).text
    counts = re.finditer(r'^repfs_pool_request_seconds_count\{op="put",[^}]*\} (\S+)$', text, re.M)
    return sum(float(m.group(1)) for m in counts)


def test_fsynced_packets_cost_two_puts_each_and_survive_kill9(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    metrics = f"127.0.0.1:{free_ports(1)[0]}"
    fs.mount("--pack-max", "1M", "--metrics", metrics)
    os.mkdir(fs.mnt / "packets")
    (fs.mnt / "warm-up").write_bytes(b"x")
    digests: dict[str, str] = {}
    before = puts(metrics)
    n = 40
    for i in range(n):
        data = os.urandom(PACKET)
        with opened(fs.mnt / "packets" / f"p{i:03d}", os.O_CREAT | os.O_WRONLY | os.O_EXCL) as fd:
            assert os.write(fd, data) == PACKET
            os.fsync(fd)
        digests[f"p{i:03d}"] = hashlib.sha256(data).hexdigest()
    spent = puts(metrics) - before
    assert spent <= 2 * n + 2, spent  # 2 per packet (+ a segment the grouping delay may have sent)
    assert fs.all_keys() == set()  # no block is its own object: each travelled in its pack
    fs.kill9()  # the last records' own updates may not have gone out: the packs say where
    fs.mount()  # packs off: what was packed still reads
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / "packets" / name).read_bytes()).hexdigest() == digest, name
    fs.unmount()
    res = run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode == 0 and "0 problems found" in res.stdout, res.stdout + res.stderr
