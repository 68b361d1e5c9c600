"""What reaches the pools, and what happens when a pool loses or garbles objects."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.helpers import Repfs, oserror, run_repfs, wait_for

pytestmark = pytest.mark.timeout(120)

BS = 64 * 1024


def read_order(fs: Repfs, key: str) -> list[Path]:
    """The pools holding `key`, in the order a read tries them (the block's placement order)."""
    order = rank_pools(block_id_from_key(key), [(p.name, 1.0) for p in fs.pools])
    by_name = {p.name: p for p in fs.pools}
    return [by_name[n] for n in order if (by_name[n] / key).exists()]


@pytest.mark.parametrize("pack_max", ["0", "1M"])  # blocks as their own objects, and in packs
def test_no_plaintext_leaves_the_host(repfs_factory: Callable[..., Repfs], pack_max: str) -> None:
    repfs = repfs_factory()
    repfs.mount("--pack-max", pack_max)
    marker = b"repfs-marker-" + os.urandom(12).hex().encode()
    name_marker = "name-marker-" + os.urandom(8).hex()
    content = marker * 40_000  # compressible: ~1.3 MB, about 20 blocks
    (repfs.mnt / name_marker).write_bytes(content)
    os.mkdir(repfs.mnt / f"dir-{name_marker}")
    (repfs.mnt / f"dir-{name_marker}" / "mixed").write_bytes(os.urandom(5000) + marker + os.urandom(BS))
    os.symlink(name_marker, repfs.mnt / "link")
    os.setxattr(repfs.mnt / name_marker, "user.note", marker)
    repfs.unmount()
    needles = [marker, name_marker.encode(), marker[:16], marker[-16:], repfs.key.read_bytes()]
    objects = [p for pool in repfs.pools for p in pool.rglob("*") if p.is_file()]
    assert len(objects) > 10
    total = 0
    for p in objects:
        blob = p.read_bytes()
        total += len(blob)
        for needle in needles:
            assert needle not in blob, f"{p} holds plaintext {needle[:20]!r}"
        for name in (p.name, str(p)):
            assert name_marker not in name
    assert total < len(content)  # compressed before it was encrypted
    repfs.mount()
    assert (repfs.mnt / name_marker).read_bytes() == content


def _write_files(fs: Repfs, n: int = 8) -> dict[str, str]:
    rng = random.Random(5)
    digests = {}
    for i in range(n):
        data = rng.randbytes(3 * BS + rng.randint(1, BS))
        (fs.mnt / f"f{i}").write_bytes(data)
        digests[f"f{i}"] = hashlib.sha256(data).hexdigest()
    return digests


def _check_files(fs: Repfs, digests: dict[str, str]) -> None:
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name


def scrub(fs: Repfs, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_repfs("scrub", str(fs.fs_dir), "--key-file", str(fs.key), *extra, timeout=120)


@pytest.mark.standalone
def test_losing_a_pools_blocks_loses_nothing_and_scrub_brings_them_back(repfs: Repfs) -> None:
    digests = _write_files(repfs)
    repfs.remount()
    victim = repfs.pools[0]
    before = repfs.pool_keys(victim)
    assert len(before) > 5
    shutil.rmtree(victim / "blocks")  # the superblock stays: no heartbeat notices
    assert (victim / "superblock").exists()
    _check_files(repfs, digests)  # every file reads: the other copies serve
    repfs.unmount()
    lost = before - repfs.pool_keys(victim)
    assert lost, "reads alone should not have restored every copy (second-priority copies are never read)"
    res = scrub(repfs)
    assert res.returncode == 0, res.stderr
    assert f"{len(lost)} copies repaired" in res.stdout and "0 unrecoverable" in res.stdout, res.stdout
    assert repfs.pool_keys(victim) == before
    res = scrub(repfs)  # nothing left to do
    assert res.returncode == 0 and "0 copies repaired" in res.stdout, res.stdout + res.stderr
    repfs.mount()
    _check_files(repfs, digests)


@pytest.mark.standalone
def test_scrub_repairs_damaged_copies_and_reports_unrecoverable_blocks(repfs: Repfs) -> None:
    (repfs.mnt / "four").write_bytes(os.urandom(4 * BS))
    repfs.unmount()
    keys = sorted(repfs.all_keys())
    assert len(keys) == 4
    first, second = read_order(repfs, keys[0])
    (second / keys[0]).write_bytes(b"garbage")  # a second-priority copy: reads never see it
    for pool in read_order(repfs, keys[1]):  # every copy of one block damaged
        (pool / keys[1]).write_bytes(os.urandom(100))
    res = scrub(repfs)
    assert res.returncode == 6, res.stdout + res.stderr
    assert "1 copies repaired" in res.stdout and "1 unrecoverable" in res.stdout, res.stdout
    assert (second / keys[0]).read_bytes() == (first / keys[0]).read_bytes()
    assert "no good copy" in res.stderr, res.stderr


def test_scrub_refuses_a_mounted_filesystem(repfs: Repfs) -> None:
    res = scrub(repfs)
    assert res.returncode == 2 and "mounted" in res.stderr, res.stderr
    assert repfs.alive


@pytest.mark.standalone
def test_wiped_pool_gets_its_superblock_and_blocks_back(repfs: Repfs) -> None:
    digests = _write_files(repfs, 6)
    repfs.remount("--heartbeat", "0.3")
    victim = repfs.pools[1]
    before = repfs.pool_keys(victim)
    assert before
    for child in victim.iterdir():  # everything, the superblock too
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    _check_files(repfs, digests)
    assert wait_for(lambda: repfs.pool_keys(victim) == before, 30), "the lost copies did not come back"
    assert (victim / "superblock").exists()
    repfs.remount()  # the pool is recognised again at the next mount
    _check_files(repfs, digests)


@pytest.mark.standalone
def test_corrupt_replica_is_detected_and_repaired(repfs: Repfs) -> None:
    data = os.urandom(3 * BS)
    (repfs.mnt / "three").write_bytes(data)
    repfs.remount()  # a cold cache: reads go to the pools
    keys = sorted(repfs.all_keys())
    assert len(keys) == 3
    damaged: dict[Path, bytes] = {}
    for i, key in enumerate(keys):
        first, second = read_order(repfs, key)
        assert first.joinpath(key).read_bytes() == second.joinpath(key).read_bytes()  # deterministic encryption
        good = first.joinpath(key).read_bytes()
        if i == 0:  # garbage of the same length
            bad = os.urandom(len(good))
        elif i == 1:  # one flipped bit in the middle
            flipped = bytearray(good)
            flipped[len(flipped) // 2] ^= 0x10
            bad = bytes(flipped)
        else:  # truncated
            bad = good[: len(good) // 2]
        first.joinpath(key).write_bytes(bad)
        damaged[first / key] = second.joinpath(key).read_bytes()
    assert (repfs.mnt / "three").read_bytes() == data
    for path, good in damaged.items():
        assert path.read_bytes() == good, f"{path} was not repaired from the other copy"


@pytest.mark.standalone
def test_a_block_with_no_good_copy_is_an_error_never_garbage(repfs: Repfs) -> None:
    data = os.urandom(2 * BS)
    (repfs.mnt / "two").write_bytes(data)
    (repfs.mnt / "other").write_bytes(b"unharmed")
    repfs.remount()
    victim_key = next(k for k in sorted(repfs.all_keys()) if os.path.getsize(read_order(repfs, k)[0] / k) > 1000)
    for pool in read_order(repfs, victim_key):
        blob = bytearray((pool / victim_key).read_bytes())
        blob[-1] ^= 1
        (pool / victim_key).write_bytes(bytes(blob))
    repfs.expect_log(r"ERROR repfs\.fuse: read: block [0-9a-f]+: no readable copy")
    with open(repfs.mnt / "two", "rb") as f:
        got = oserror(f.read)
    assert got == errno.EIO
    assert (repfs.mnt / "other").read_bytes() == b"unharmed"
    assert repfs.alive
