"""repfs on S3 pools, mounted for real: a tree survives unmount and remount; pools of
another filesystem and too few reachable pools are refused at mount."""

from __future__ import annotations

import subprocess
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.backend.keys import SUPERBLOCK_KEY
from tests.helpers import is_mounted, run_repfs
from tests.s3.rig import S3Repfs
from tests.seaweed import WeedServer, stop_all

pytestmark = [pytest.mark.mount, pytest.mark.timeout(240)]

PACKAGES = ("json", "email", "http", "logging", "urllib", "xml", "importlib")
NOT_COPIED = ("__pycache__", "*.pyc")


def copy_tree(dest: Path) -> Path:
    """rsync a few stdlib packages (a few MB, hundreds of files) into `dest`; the source root."""
    src = Path(sysconfig.get_paths()["stdlib"])
    dest.mkdir()
    excludes = [f"--exclude={x}" for x in NOT_COPIED]
    subprocess.run(["rsync", "-a", *excludes, *(str(src / p) for p in PACKAGES), f"{dest}/"], check=True)
    return src


def same_tree(src: Path, dest: Path) -> None:
    for p in PACKAGES:
        excludes = [f"--exclude={x}" for x in NOT_COPIED]
        res = subprocess.run(["diff", "-r", *excludes, str(src / p), str(dest / p)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


@pytest.mark.standalone
def test_a_tree_on_three_s3_pools_survives_unmount_and_remount(
    weeds: list[WeedServer], s3fs_factory: Callable[..., S3Repfs]
) -> None:
    fs = s3fs_factory(weeds)  # 3 buckets, 2 replicas, credentials in a file named by repfs.toml
    fs.mount()
    src = copy_tree(fs.mnt / "lib")
    same_tree(src, fs.mnt / "lib")
    fs.unmount()
    objects = fs.bucket_objects()
    for pool, names in objects.items():
        assert f"{fs.prefix}/{SUPERBLOCK_KEY}" in names, pool
        assert sum(n.startswith(f"{fs.prefix}/blocks/") for n in names) > 50, pool
    blocks = [n for names in objects.values() for n in names if "/blocks/" in n]
    assert len(blocks) == 2 * len(set(blocks))  # every block on exactly 2 pools
    fs.mount()
    same_tree(src, fs.mnt / "lib")
    fs.unmount()


def test_a_pool_of_another_filesystem_is_refused_at_mount(
    weeds: list[WeedServer], s3fs_factory: Callable[..., S3Repfs]
) -> None:
    mine, other = s3fs_factory(weeds, "mine"), s3fs_factory(weeds, "other")
    config = mine.fs_dir / "repfs.toml"
    config.write_text(config.read_text().replace(mine.pool_urls[1], other.pool_urls[1]))
    res = run_repfs("mount", str(mine.fs_dir), str(mine.mnt), "--key-file", str(mine.key))
    assert res.returncode == 4, res.stdout + res.stderr
    assert f"pool s3p2 ({other.pool_urls[1]}) belongs to filesystem" in res.stderr
    assert "Traceback" not in res.stderr
    assert not is_mounted(mine.mnt)


def test_mount_needs_a_write_quorum_of_reachable_pools(
    weed_factory: Callable[..., list[WeedServer]], s3fs_factory: Callable[..., S3Repfs]
) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, mkfs=False)
    fs.mkfs("--write-quorum", "2")
    stop_all(servers[:2])
    res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(fs.key))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "only 1 of 3 pools can be reached, fewer than the write quorum (2): not mounting" in res.stderr
    assert f"s3p1: pool s3p1: cannot connect to http://{servers[0].endpoint}" in res.stderr
    assert f"s3p2: pool s3p2: cannot connect to http://{servers[1].endpoint}" in res.stderr
    assert not is_mounted(fs.mnt)

    servers[1].start()  # 2 of 3: enough to mount; the third starts out down
    fs.mount()
    assert "pool s3p1 is unreachable at mount; it starts out down" in fs.log_text()
    (fs.mnt / "file").write_bytes(b"x" * 300_000)
    fs.unmount()
    fs.mount()
    assert (fs.mnt / "file").read_bytes() == b"x" * 300_000
    fs.unmount()
