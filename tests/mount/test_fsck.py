"""`repfs fsck` finds what went wrong behind repfs's back and `--repair` fixes it; a crash
in the middle of garbage collection loses no block that is still referenced."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time

import pytest

from repfs.meta import schema as s
from repfs.meta.store import MetaStore
from repfs.volume import FsPaths
from tests.helpers import Repfs, run_repfs

pytestmark = pytest.mark.timeout(240)

BS = 64 * 1024


def fsck(fs: Repfs, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), *extra, timeout=120)


def count(out: str, label: str) -> int:
    line = next(line for line in out.splitlines() if line.startswith(label + ":"))
    return int(line.rsplit(":", 1)[1])


@pytest.mark.standalone
def test_fsck_finds_a_deleted_and_an_orphan_object_and_repairs_both(repfs: Repfs) -> None:
    files = {f"f{i}": random.Random(i).randbytes(2 * BS + i) for i in range(5)}
    for name, data in files.items():
        (repfs.mnt / name).write_bytes(data)
    repfs.unmount()
    res = fsck(repfs)
    assert res.returncode == 0 and "0 problems found" in res.stdout, res.stdout + res.stderr

    pool1, pool2 = repfs.pools[0], repfs.pools[1]
    victim = sorted(repfs.pool_keys(pool1))[0]
    (pool1 / victim).unlink()  # deleted behind repfs's back
    orphan = "blocks/ab/ab" + os.urandom(31).hex()
    (pool2 / orphan).parent.mkdir(parents=True, exist_ok=True)
    (pool2 / orphan).write_bytes(os.urandom(1000))  # an object no metadata references

    res = fsck(repfs)
    assert res.returncode == 1, res.stdout + res.stderr
    assert count(res.stdout, "missing copies of blocks") == 1
    assert count(res.stdout, "objects on pools that no metadata references") == 1
    assert count(res.stdout, "blocks with no copy on any pool") == 0

    res = fsck(repfs, "--repair")
    assert res.returncode == 0 and "0 problems left" in res.stdout, res.stdout + res.stderr
    assert (pool1 / victim).exists() and not (pool2 / orphan).exists()
    repfs.mount()
    for name, data in files.items():
        assert (repfs.mnt / name).read_bytes() == data


@pytest.mark.standalone
def test_fsck_names_the_files_of_a_block_that_is_gone_everywhere(repfs: Repfs) -> None:
    (repfs.mnt / "doomed").write_bytes(os.urandom(BS))
    (repfs.mnt / "fine").write_bytes(os.urandom(BS))
    repfs.unmount()
    lost = sorted(repfs.all_keys())[0]
    for p in repfs.pools:  # every copy of one block
        (p / lost).unlink(missing_ok=True)
    res = fsck(repfs)
    assert res.returncode == 1
    assert count(res.stdout, "blocks with no copy on any pool") == 1
    assert "lost data in: /doomed" in res.stdout or "lost data in: /fine" in res.stdout


def test_fsck_names_the_files_of_a_pack_that_is_gone_everywhere(repfs: Repfs) -> None:
    """With packs (the default), a small file's block lives in a journal pack: a pack
    deleted from every pool behind repfs's back is a lost block, named by its file."""
    for name in ("doomed", "fine"):
        with open(repfs.mnt / name, "wb") as f:
            f.write(os.urandom(BS))
            f.flush()
            os.fsync(f.fileno())  # each its own segment: its own pack
    ino = os.stat(repfs.mnt / "doomed").st_ino
    repfs.unmount()
    meta = MetaStore(FsPaths(repfs.fs_dir).meta, readonly=True)
    try:
        with meta.read() as t:
            block_id = t.block_of(ino, 0)
            assert block_id is not None
            rec = t.block_record(block_id)
            assert rec is not None and rec.in_pack
            pack = rec.in_pack
    finally:
        meta.close()
    assert not repfs.all_keys()  # no block is its own object
    holders = [p for p in repfs.pools if (p / pack).exists()]
    assert len(holders) == 2
    res = fsck(repfs)
    assert res.returncode == 0 and "0 problems found" in res.stdout, res.stdout + res.stderr
    for p in holders:
        (p / pack).unlink()
    res = fsck(repfs)
    assert res.returncode == 1, res.stdout + res.stderr
    assert count(res.stdout, "blocks with no copy on any pool") == 1
    assert "lost data in: /doomed" in res.stdout and "/fine" not in res.stdout


def test_a_crash_during_garbage_collection_loses_no_referenced_block(repfs: Repfs) -> None:
    rng = random.Random(3)
    keep = {f"keep{i}": rng.randbytes(BS + i) for i in range(6)}
    for name, data in keep.items():
        (repfs.mnt / name).write_bytes(data)
    for round_ in range(4):
        shared = rng.randbytes(BS)  # a block both a kept and a deleted file hold (deduplicated)
        (repfs.mnt / f"keep-shared{round_}").write_bytes(shared)
        keep[f"keep-shared{round_}"] = shared
        for i in range(30):
            (repfs.mnt / f"junk{i}").write_bytes(rng.randbytes(BS) + (shared if i % 5 == 0 else b""))
        os.sync()
        for i in range(30):
            os.unlink(repfs.mnt / f"junk{i}")
        time.sleep(rng.uniform(0.0, 1.5))  # the garbage collector is somewhere in its work: kill it there
        repfs.kill9()
        repfs.mount()
        for name, data in keep.items():
            assert (repfs.mnt / name).read_bytes() == data, (round_, name)
    repfs.unmount()
    res = fsck(repfs)
    assert count(res.stdout, "blocks with no copy on any pool") == 0, res.stdout
    assert count(res.stdout, "missing copies of blocks") == 0, res.stdout
    shutil.rmtree(repfs.fs_dir / "cache", ignore_errors=True)
    repfs.mount()  # a cold cache: everything from the pools
    for name, data in keep.items():
        assert (repfs.mnt / name).read_bytes() == data, name


def test_fsck_makes_the_link_table_match_the_names(repfs: Repfs) -> None:
    """The link table (inode → its names, where audit and policy find a file) is checked
    against the directory entries: a row lost and a row left behind are both repaired."""
    (repfs.mnt / "d").mkdir()
    (repfs.mnt / "d" / "kept").write_bytes(b"x")
    os.link(repfs.mnt / "d" / "kept", repfs.mnt / "second")
    repfs.unmount()
    meta = MetaStore(FsPaths(repfs.fs_dir).meta)
    try:
        with meta.write_unjournaled() as t:  # behind repfs's back
            d = t.lookup(s.ROOT_INO, b"d")
            assert d is not None
            kept = t.lookup(d, b"kept")
            assert kept is not None and sorted(t.links_of(kept)) == sorted([(d, b"kept"), (s.ROOT_INO, b"second")])
            t.delete("links", s.link_key(kept, s.ROOT_INO, b"second"))
            t.put("links", s.link_key(kept, d, b"gone"), b"")
    finally:
        meta.close()
    res = fsck(repfs)
    assert res.returncode == 1, res.stdout + res.stderr
    assert count(res.stdout, "link table rows that differ from the names (where a file lives)") == 2
    res = fsck(repfs, "--repair")
    assert res.returncode == 0 and "0 problems left" in res.stdout, res.stdout + res.stderr
    meta = MetaStore(FsPaths(repfs.fs_dir).meta)
    try:
        with meta.read() as t:
            assert sorted(t.links_of(kept)) == sorted([(d, b"kept"), (s.ROOT_INO, b"second")])
    finally:
        meta.close()
    repfs.mount()
    assert (repfs.mnt / "second").read_bytes() == b"x"
