"""Packs through a real mount (`--pack-max 1M`):
an fsync'd 64 KiB file costs at most 2 object PUTs (the pool request metrics count them),
every fsync'd file survives kill -9, at random points of pack writes and of compaction,
reads back with packs off, and fsck finds nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from repfs.backend.keys import JOURNAL_PREFIX, parse_journal_key
from repfs.blocks import packs
from repfs.meta.store import MetaStore
from repfs.volume import FsPaths
from tests.helpers import Repfs, opened, run_repfs, wait_for
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
    fs.mount("--pack-max", "0")  # packs off: what was packed still reads
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / "packets" / name).read_bytes()).hexdigest() == digest, name
    fs.unmount()
    fsck_clean(fs)


def fsck_clean(fs: Repfs) -> None:
    res = run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode == 0 and "0 problems found" in res.stdout, res.stdout + res.stderr


def pack_keys(fs: Repfs) -> set[str]:
    """The journal objects on the pools (segments and packs)."""
    found = set()
    for pool in fs.pools:
        for p in (pool / "journal").glob("*"):
            with contextlib.suppress(ValueError):  # a file being written
                parse_journal_key(JOURNAL_PREFIX + p.name)
                found.add(JOURNAL_PREFIX + p.name)
    return found


def test_kill9_at_random_points_of_pack_writes_keeps_every_fsynced_file(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    rng = random.Random(2103)
    synced: dict[str, str] = {}  # files whose fsync returned → sha256
    for cycle in range(4):
        fs.mount("--pack-max", "1M")
        for name, digest in synced.items():  # everything fsync'd before each kill
            assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name
        sizes = [rng.choice([1000, PACKET, 3 * PACKET + 7]) for _ in range(10_000)]
        stop = threading.Event()

        def write(cycle: int = cycle, sizes: list[int] = sizes, stop: threading.Event = stop) -> None:
            for i, size in enumerate(sizes):
                name, data = f"c{cycle}-{i}", os.urandom(size)
                try:
                    fd = os.open(fs.mnt / name, os.O_CREAT | os.O_WRONLY | os.O_EXCL)
                    os.write(fd, data)
                    os.fsync(fd)
                except OSError:  # the daemon is gone
                    return
                synced[name] = hashlib.sha256(data).hexdigest()
                with contextlib.suppress(OSError):
                    os.close(fd)
                if stop.is_set():
                    return

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(rng.uniform(0.2, 1.2))
        fs.kill9()
        stop.set()
        writer.join(timeout=60)
        assert not writer.is_alive()
    assert len(synced) > 20
    fs.mount("--pack-max", "0")  # packs off
    for name, digest in synced.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name
    fs.unmount()
    fsck_clean(fs)


def test_kill9_at_random_points_of_compaction_loses_nothing(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    fs.mount("--pack-max", "1M")
    files = {f"f{i}": bytearray(os.urandom(8 * PACKET)) for i in range(4)}
    for name, data in files.items():  # a file's eight blocks go in one pack with its fsync
        with opened(fs.mnt / name, os.O_CREAT | os.O_WRONLY) as fd:
            os.write(fd, data)
            os.fsync(fd)
    for name, data in files.items():  # six of them change: two of eight frames stay live
        new = os.urandom(6 * PACKET)
        with opened(fs.mnt / name, os.O_WRONLY) as fd:
            os.pwrite(fd, new, 0)
            os.fsync(fd)
        data[: len(new)] = new
    for i in range(3):  # three snapshots (each of a change): the kept ones are past the first packs
        (fs.mnt / f"tick{i}").write_bytes(b"")
        fs.remount("--pack-max", "1M")
    fs.unmount()
    meta = MetaStore(FsPaths(fs.fs_dir).meta, readonly=True)
    try:
        with meta.read() as t:
            sparse = {k for k, u in packs.every(t) if u.sparse}
    finally:
        meta.close()
    assert len(sparse) == 4 and sparse <= pack_keys(fs)
    rng = random.Random(2104)
    for _ in range(4):
        fs.mount("--pack-max", "1M")  # compaction starts at once
        time.sleep(rng.uniform(0.0, 1.5))
        fs.kill9()
    fs.mount("--pack-max", "1M")
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data, name
    for i in range(3):  # snapshots that hold every move: the emptied packs are pruned
        (fs.mnt / f"tock{i}").write_bytes(b"")
        fs.remount("--pack-max", "1M")
    assert "compaction: " in fs.log_text()
    assert not sparse & pack_keys(fs), sparse & pack_keys(fs)
    fs.unmount()
    fsck_clean(fs)
    fs.mount("--pack-max", "0")  # packs off
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data, name


def test_a_wiped_pool_that_held_packs_gets_their_blocks_back_as_objects(repfs_factory: Callable[..., Repfs]) -> None:
    """A pool's packs lost behind repfs's back: reads go on from the other holder, the pool is
    accepted back empty, and the repair writes each block that lost a copy out as its own
    object on its targets (a frame cannot be put back into a pack)."""
    fs = repfs_factory()
    fs.mount("--pack-max", "1M", "--heartbeat", "0.3")
    digests: dict[str, str] = {}
    for i in range(8):
        data = os.urandom(PACKET)
        with opened(fs.mnt / f"p{i}", os.O_CREAT | os.O_WRONLY) as fd:
            os.write(fd, data)
            os.fsync(fd)
        digests[f"p{i}"] = hashlib.sha256(data).hexdigest()
    victim = fs.pools[1]
    assert fs.all_keys() == set() and any((victim / "journal").iterdir())
    fs.remount("--pack-max", "1M", "--heartbeat", "0.3")  # a cold cache: reads go to the pools
    for child in victim.iterdir():  # everything, the superblock too
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name
    assert wait_for(lambda: (victim / "superblock").exists(), 30)
    assert wait_for(lambda: len(fs.all_keys()) > 0, 60), "no block was written out of its pack"
    fs.expect_log(r"written out of pack|no superblock|missing|lost")
    fs.unmount()
    fsck_clean(fs)
    shutil.rmtree(fs.fs_dir / "cache")
    fs.mount("--pack-max", "1M")
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name
