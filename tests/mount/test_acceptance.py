"""What a user sees: real mounts in a subprocess, real LMDB, real pool directories."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.mount.mountlib import RepfsMount, run_repfs, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def rm(tmp_path: Path) -> Iterator[RepfsMount]:
    m = RepfsMount(tmp_path)
    m.mkfs()
    m.mount()
    try:
        yield m
    finally:
        m.unmount()
    log = m.log_text()
    assert "Traceback" not in log, log


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rsync_tree_survives_remount(rm: RepfsMount) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    src = rm.base / "src"
    src.mkdir()
    for pkg in ("json", "email", "asyncio", "unittest", "importlib"):
        shutil.copytree(stdlib / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["rsync", "-a", f"{src}/", f"{rm.mnt}/tree/"], check=True)
    rm.remount()
    res = subprocess.run(["diff", "-r", str(src), str(rm.mnt / "tree")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[:2000]
    for p in list(src.rglob("*.py"))[:50]:
        a, b = p.stat(), (rm.mnt / "tree" / p.relative_to(src)).stat()
        assert (a.st_mode, a.st_mtime_ns, a.st_size) == (b.st_mode, b.st_mtime_ns, b.st_size)


def test_fsynced_data_survives_kill9(rm: RepfsMount) -> None:
    data = os.urandom(300_000)
    with open(rm.mnt / "synced", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    unsynced = os.urandom(200_000)
    (rm.mnt / "closed").write_bytes(unsynced)
    rm.kill9()
    rm.mount()
    assert (rm.mnt / "synced").read_bytes() == data
    assert (rm.mnt / "closed").read_bytes() == unsynced


def test_no_plaintext_leaves_the_host(rm: RepfsMount) -> None:
    marker = b"repfs-marker-" + os.urandom(8).hex().encode()
    (rm.mnt / "marker-file-name-xyzzy").write_bytes(marker * 20000 + os.urandom(1000))
    rm.unmount()
    for pool in rm.pools:
        for p in pool.rglob("*"):
            if p.is_file():
                blob = p.read_bytes()
                assert marker not in blob and b"xyzzy" not in blob, p
    rm.mount()


def test_losing_a_pools_objects_loses_nothing_and_copies_come_back(rm: RepfsMount) -> None:
    files = {f"f{i}": os.urandom(200_000 + i) for i in range(6)}
    for name, data in files.items():
        (rm.mnt / name).write_bytes(data)
    rm.unmount()
    rm.mount("--heartbeat", "0.3")
    victim = rm.pools[0]
    before = set(rm.pool_objects(victim))
    assert before
    for child in victim.iterdir():  # the pool's whole content, superblock included
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for name, data in files.items():
        assert (rm.mnt / name).read_bytes() == data
    assert wait_for(lambda: set(rm.pool_objects(victim)) == before, 30), "the lost copies did not come back"
    assert (victim / "superblock").exists()
    rm.remount()  # the pool is recognised again at the next mount
    assert all((rm.mnt / n).read_bytes() == d for n, d in files.items())


def test_corrupt_replica_is_detected_and_repaired(rm: RepfsMount) -> None:
    data = os.urandom(64 * 1024)  # exactly one block
    (rm.mnt / "one").write_bytes(data)
    rm.remount()
    holders = [p for p in rm.pools if rm.pool_objects(p)]
    assert len(holders) == 2
    (key, good), = rm.pool_objects(holders[0]).items()
    # the copy a read tries first is the first holder in the block's placement order
    order = rank_pools(block_id_from_key(key), [(p.name, 1.0) for p in rm.pools])
    first = next(p for p in rm.pools if p.name == next(n for n in order if (rm.base / n / key).exists()))
    garbage = os.urandom(len(good))
    (first / key).write_bytes(garbage)
    rm.remount()  # a cold cache, so the read goes to the pools
    assert (rm.mnt / "one").read_bytes() == data
    assert (first / key).read_bytes() == good  # repaired from the other copy
    assert "was corrupt" in rm.log_text() or "corrupt" in rm.log_text()


def test_wrong_key_is_refused_and_passwd_rotates(rm: RepfsMount) -> None:
    (rm.mnt / "keep").write_bytes(b"precious")
    rm.unmount()
    wrong = rm.base / "wrong"
    wrong.write_bytes(os.urandom(32).hex().encode())
    wrong.chmod(0o600)
    snapshot = {p: p.read_bytes() for pool in rm.pools for p in pool.rglob("*") if p.is_file()}
    res = run_repfs("mount", str(rm.fs_dir), str(rm.mnt), "--foreground", "--key-file", str(wrong), check=False)
    assert res.returncode == 3
    assert "wrong passphrase" in res.stderr and res.stderr.count("\n") <= 2
    assert {p: p.read_bytes() for pool in rm.pools for p in pool.rglob("*") if p.is_file()} == snapshot
    new = rm.base / "new"
    new.write_bytes(os.urandom(32).hex().encode())
    new.chmod(0o600)
    run_repfs("passwd", str(rm.fs_dir), "--key-file", str(rm.key), "--new-key-file", str(new))
    res = run_repfs("mount", str(rm.fs_dir), str(rm.mnt), "--foreground", "--key-file", str(rm.key), check=False)
    assert res.returncode == 3
    rm.mount(key=new)
    assert (rm.mnt / "keep").read_bytes() == b"precious"


def test_foreign_pool_and_config_typo_are_refused(rm: RepfsMount, tmp_path: Path) -> None:
    rm.unmount()
    other = RepfsMount(tmp_path / "other")
    other.mkfs()
    config = rm.fs_dir / "repfs.toml"
    original = config.read_text()
    config.write_text(original.replace(str(rm.pools[1]), str(other.pools[1])))
    res = run_repfs("mount", str(rm.fs_dir), str(rm.mnt), "--foreground", "--key-file", str(rm.key), check=False)
    assert res.returncode == 4 and "pool2" in res.stderr
    config.write_text("replicsa = 2\n" + original)
    res = run_repfs("mount", str(rm.fs_dir), str(rm.mnt), "--foreground", "--key-file", str(rm.key), check=False)
    assert res.returncode == 2 and "replicsa" in res.stderr
    config.write_text(original)
    res = run_repfs("mkfs", str(rm.fs_dir), "--pool", f"file://{tmp_path}/x", "--key-file", str(rm.key), check=False)
    assert res.returncode == 5
    assert not os.path.ismount(rm.mnt)
    rm.mount()


def test_posix_semantics(rm: RepfsMount) -> None:
    m = rm.mnt
    (m / "a").write_bytes(b"hello")
    os.link(m / "a", m / "b")
    assert os.stat(m / "a").st_nlink == 2
    os.symlink("a", m / "s")
    assert os.readlink(m / "s") == "a" and (m / "s").read_bytes() == b"hello"
    os.mkdir(m / "d")
    (m / "d" / "x").write_bytes(b"x")
    os.mkdir(m / "e")
    with pytest.raises(OSError) as e:
        os.rename(m / "e", m / "d")
    assert e.value.errno == errno.ENOTEMPTY
    os.rename(m / "d", m / "e")
    assert (m / "e" / "x").read_bytes() == b"x"
    with pytest.raises(OSError) as e:
        os.open(m / "a", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        (m / ("n" * 256)).write_bytes(b"")
    assert e.value.errno == errno.ENAMETOOLONG
    (m / ("n" * 255)).write_bytes(b"ok")
    os.setxattr(m / "a", "user.k", b"v")
    assert os.getxattr(m / "a", "user.k") == b"v"
    with pytest.raises(OSError) as e:
        os.getxattr(m / "a", "user.none")
    assert e.value.errno == errno.ENODATA
    fd = os.open(m / "sparse", os.O_CREAT | os.O_RDWR)
    os.pwrite(fd, b"end", 100 * 1024 * 1024)
    os.close(fd)
    assert os.stat(m / "sparse").st_size == 100 * 1024 * 1024 + 3
    with open(m / "sparse", "rb") as f:
        f.seek(50 * 1024 * 1024)
        assert f.read(4096) == bytes(4096)
    os.truncate(m / "a", 2)
    assert (m / "a").read_bytes() == b"he"
    os.truncate(m / "a", 6)
    assert (m / "a").read_bytes() == b"he\0\0\0\0"
    os.utime(m / "a", ns=(1_000_000_001, 2_000_000_003))
    assert os.stat(m / "a").st_mtime_ns == 2_000_000_003
    fd = os.open(m / "open-unlinked", os.O_CREAT | os.O_RDWR)
    os.write(fd, b"still here")
    os.unlink(m / "open-unlinked")
    assert os.pread(fd, 100, 0) == b"still here"
    os.close(fd)
    os.mkfifo(m / "fifo")
    assert (os.stat(m / "fifo").st_mode & 0o170000) == 0o010000
    big = m / "huge"
    with open(big, "wb") as f:
        f.truncate(1 << 40)
        f.seek((1 << 40) - 5)
        f.write(b"tail!")
    with open(big, "rb") as f:
        f.seek((1 << 40) - 5)
        assert f.read() == b"tail!"
    assert os.statvfs(m).f_blocks > 0
