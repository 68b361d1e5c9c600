"""What survives a killed daemon, and many small fsync'd files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil

import pytest

from tests.helpers import Repfs, opened, run_repfs, wait_for

pytestmark = pytest.mark.timeout(120)

BS = 64 * 1024


def test_fsynced_file_survives_kill9(repfs: Repfs) -> None:
    data = random.Random(1).randbytes(5 * BS + 123)
    fd = os.open(repfs.mnt / "synced", os.O_CREAT | os.O_WRONLY)
    os.write(fd, data)
    os.fsync(fd)
    repfs.kill9()  # at once, the file still open
    with contextlib.suppress(OSError):  # ENOTCONN: the daemon is gone
        os.close(fd)
    repfs.mount()
    assert (repfs.mnt / "synced").read_bytes() == data
    assert os.stat(repfs.mnt / "synced").st_size == len(data)


def test_closed_file_survives_kill9_and_is_uploaded_at_next_mount(repfs: Repfs) -> None:
    rng = random.Random(2)
    base = rng.randbytes(4 * BS)
    (repfs.mnt / "edited").write_bytes(base)
    with opened(repfs.mnt / "edited", os.O_RDWR) as fd:
        os.fsync(fd)  # stored once...
        os.pwrite(fd, b"EDITED" * 1000, BS - 77)  # ...then changed, without fsync
    expected_edit = bytearray(base)
    expected_edit[BS - 77 : BS - 77 + 6000] = b"EDITED" * 1000
    fresh = {f"closed-{i}": rng.randbytes(rng.randint(1, 3 * BS)) for i in range(5)}
    for name, data in fresh.items():
        (repfs.mnt / name).write_bytes(data)  # write + close, no fsync
    os.mkdir(repfs.mnt / "dir")
    (repfs.mnt / "dir" / "tiny").write_bytes(b"tiny")
    repfs.kill9()  # before the write-back had time to store anything

    repfs.mount()
    assert (repfs.mnt / "edited").read_bytes() == expected_edit
    for name, data in fresh.items():
        assert (repfs.mnt / name).read_bytes() == data, name
    assert (repfs.mnt / "dir" / "tiny").read_bytes() == b"tiny"
    # the blocks staged before the crash went to the pools: a mount without any cache has them
    repfs.unmount()
    dirty = repfs.fs_dir / "cache" / "dirty"
    assert not dirty.exists() or not any(dirty.iterdir()), sorted(p.name for p in dirty.iterdir())
    shutil.rmtree(repfs.fs_dir / "cache")
    repfs.mount()
    assert (repfs.mnt / "edited").read_bytes() == expected_edit
    for name, data in fresh.items():
        assert (repfs.mnt / name).read_bytes() == data, name


def test_blocks_made_from_spares_survive_kill9_with_zeros_where_nothing_was_written(repfs: Repfs) -> None:
    """Full blocks written in order leave their cache files as zeroed spares once stored;
    a closed file whose blocks were made from them comes back after kill -9 with exactly
    its data: zeros where it wrote nothing, never the bytes a spare held before."""
    secret = random.Random(4).randbytes(4 * BS)
    (repfs.mnt / "copied").write_bytes(secret)  # written in order: its blocks are not kept
    with opened(repfs.mnt / "copied", os.O_RDONLY) as fd:
        os.fsync(fd)
    spare = repfs.fs_dir / "cache" / "spare"
    assert wait_for(lambda: len([p for p in spare.iterdir() if not p.name.startswith(".")]) >= 2, 10)
    inodes = {p.stat().st_ino for p in spare.iterdir()}
    with opened(repfs.mnt / "sparse", os.O_CREAT | os.O_WRONLY) as fd:
        os.pwrite(fd, b"tail", BS // 2)  # a new block; nothing before BS/2
        os.pwrite(fd, b"next", 2 * BS + 10)  # another, past a hole
    made = {p.stat().st_ino for sub in ("dirty", "clean") for p in (repfs.fs_dir / "cache" / sub).iterdir()}
    assert made & inodes  # the new blocks' files were spares
    repfs.kill9()  # closed, not fsync'd: its blocks are still in the cache
    repfs.mount()
    want = bytes(BS // 2) + b"tail" + bytes(2 * BS + 10 - BS // 2 - 4) + b"next"
    assert (repfs.mnt / "sparse").read_bytes() == want
    assert (repfs.mnt / "copied").read_bytes() == secret
    repfs.unmount()
    shutil.rmtree(repfs.fs_dir / "cache")  # what reached the pools, not the cache
    repfs.mount()
    assert (repfs.mnt / "sparse").read_bytes() == want


def test_kill9_during_heavy_writes_keeps_every_fsynced_file(repfs: Repfs) -> None:
    rng = random.Random(3)
    synced: dict[str, bytes] = {}
    for i in range(30):
        data = rng.randbytes(rng.randint(1, 4 * BS))
        with opened(repfs.mnt / f"s{i}", os.O_CREAT | os.O_WRONLY) as fd:
            os.write(fd, data)
            os.fsync(fd)
        synced[f"s{i}"] = data
        (repfs.mnt / f"u{i}").write_bytes(rng.randbytes(2 * BS))  # not synced, still in flight
    repfs.kill9()
    repfs.mount()
    for name, data in synced.items():
        assert (repfs.mnt / name).read_bytes() == data, name
    for i in range(30):  # the others are whole (closed before the kill), never torn
        assert os.stat(repfs.mnt / f"u{i}").st_size == 2 * BS


@pytest.mark.timeout(240)
def test_many_small_fsynced_files(repfs: Repfs) -> None:
    digests: dict[str, str] = {}
    os.mkdir(repfs.mnt / "many")
    for i in range(500):
        data = os.urandom(64 * 1024)
        path = repfs.mnt / "many" / f"packet-{i:04d}"
        with opened(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL) as fd:
            assert os.write(fd, data) == len(data)
            os.fsync(fd)
        digests[path.name] = hashlib.sha256(data).hexdigest()
    repfs.remount()
    names = sorted(os.listdir(repfs.mnt / "many"))
    assert names == sorted(digests)
    for name in names:
        got = hashlib.sha256((repfs.mnt / "many" / name).read_bytes()).hexdigest()
        assert got == digests[name], name


@pytest.mark.timeout(300)
@pytest.mark.standalone
def test_unmount_while_blocks_are_stored_and_collected(repfs: Repfs) -> None:
    """Unmount with dirty blocks whose storing turns old blocks into garbage, again and again:
    each time the daemon must store everything and stop cleanly (exit 0, no traceback)."""
    rng = random.Random(6)
    final: dict[str, bytes] = {}
    for cycle in range(20):  # the race was lost in about one cycle of five
        for i in range(5):
            final[f"f{i}"] = rng.randbytes(BS + 5000)  # same size each time; a partial last block
            (repfs.mnt / f"f{i}").write_bytes(final[f"f{i}"])
        repfs.remount()
        if cycle % 10 == 9:
            for name, data in final.items():
                assert (repfs.mnt / name).read_bytes() == data, (cycle, name)
    os.unlink(repfs.mnt / "f0")
    del final["f0"]
    want = sum(-(-len(d) // BS) for d in final.values()) * repfs.replicas  # copies of the live blocks

    def stored() -> int:
        return sum(len(repfs.pool_keys(p)) for p in repfs.pools)

    assert wait_for(lambda: stored() == want, timeout=30), f"{stored()} objects on the pools, {want} expected"


def test_umount_reports_blocks_it_could_not_store(repfs: Repfs) -> None:
    for pool in repfs.pools:  # every pool gone (disks unmounted) while mounted
        pool.rename(pool.with_name(pool.name + "-away"))
    data = random.Random(7).randbytes(BS + 10)
    (repfs.mnt / "unstored").write_bytes(data)
    repfs.expect_log(r"ERROR .*(store|quorum|pool)")
    assert repfs.proc is not None
    proc = repfs.proc
    res = run_repfs("umount", str(repfs.mnt), "--timeout", "60")
    code = proc.wait(timeout=60)
    repfs.proc = None
    Repfs.live.discard(repfs)
    assert res.returncode != 0, f"umount said {res.stdout!r} though no block could be stored"
    assert len(res.stderr.strip().splitlines()) == 1 and "stor" in res.stderr, res.stderr
    assert code != 0
    assert any((repfs.fs_dir / "cache" / "dirty").iterdir()), "the unstored blocks must stay in the cache"
    for pool in repfs.pools:
        pool.with_name(pool.name + "-away").rename(pool)
    repfs.mount()
    assert (repfs.mnt / "unstored").read_bytes() == data
