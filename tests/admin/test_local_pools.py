"""Pools at runtime on local pools: thresholds in status and metrics, removal refused
while a pool holds the only copy of a block, a drain that survives a killed daemon,
pools of other filesystems refused."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.admin.metrics import HELP
from tests.admin.rig import admin, admin_json, curl, free_port, sample, scrape
from tests.helpers import Repfs, run_repfs, wait_for

pytestmark = pytest.mark.timeout(180)

BS = 64 * 1024


def write_files(fs: Repfs, n: int, seed: int, prefix: str = "f") -> dict[str, str]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        data = rng.randbytes(rng.randint(BS, 4 * BS))
        path = fs.mnt / f"{prefix}{i}"
        with open(path, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        out[path.name] = hashlib.sha256(data).hexdigest()
    return out


def check_files(fs: Repfs, digests: dict[str, str]) -> None:
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name


def test_thresholds_show_in_status_and_metrics_and_critical_takes_no_new_blocks(
    repfs_factory: Callable[..., Repfs], sockdir: Path
) -> None:
    fs = repfs_factory()
    sock, port = sockdir / "s", free_port()
    fs.mount("--admin-socket", str(sock), "--metrics", f"127.0.0.1:{port}", "--usage-interval", "0.5")
    write_files(fs, 6, 1)
    assert wait_for(lambda: all(p["used"] for p in admin_json(sock, "pools", "list")["pools"]), 30)
    metrics = scrape(port)
    served = {k.removesuffix("_total").removesuffix("_count") for k in metrics}
    labelled_when_used = ("repfs_drain", "repfs_pool_request_errors", "repfs_fuse_op_errors", "repfs_user_")
    missing = [n for n in HELP if n.removesuffix("_total") not in served and not n.startswith(labelled_when_used)]
    assert not missing, f"metrics not served: {missing}"
    assert sample(metrics, "repfs_pool_state", pool="pool1", state="up") == 1
    assert sample(metrics, "repfs_pool_state", pool="pool1", state="down") == 0
    assert sample(metrics, "repfs_pool_warn_ratio", pool="pool1") == 0.8
    assert sample(metrics, "repfs_written_bytes_total") and sample(metrics, "repfs_fuse_op_seconds_count", op="write")
    assert sample(metrics, "repfs_pool_request_seconds_count", pool="pool1", op="put")
    assert sample(metrics, "repfs_journal_lag_changes") is not None
    # pool1 with a capacity that puts it between warn (80%) and critical (90%)
    used = admin_json(sock, "pools", "show", "pool1")["used"]
    answer = admin_json(sock, "pools", "set", "pool1", "--capacity", str(int(used / 0.85)))
    assert answer["info"]["level"] == "warn", answer
    st = admin_json(sock, "status")
    assert any("pool pool1 is over its warn threshold" in a for a in st["alerts"]), st["alerts"]
    metrics = scrape(port)
    assert sample(metrics, "repfs_pool_level", pool="pool1") == 1
    ratio = sample(metrics, "repfs_pool_usage_ratio", pool="pool1")
    assert ratio is not None and 0.8 <= ratio < 0.9
    assert sample(metrics, "repfs_pool_level", pool="pool2") == 0
    assert "capacity = " in (fs.fs_dir / "repfs.toml").read_text()
    assert "pool pool1 is over its warn threshold" in fs.log_text()
    # critical: pool1 takes no new blocks, they go elsewhere, and the files are fine
    assert admin_json(sock, "pools", "set", "pool1", "--critical", "85%", "--warn", "0.5")["info"]["full"] is True
    assert sample(scrape(port), "repfs_pool_full", pool="pool1") == 1
    before = fs.pool_keys(fs.pools[0])
    more = write_files(fs, 6, 2, prefix="g")
    assert fs.pool_keys(fs.pools[0]) == before
    check_files(fs, more)
    fs.remount("--admin-socket", str(sock), "--metrics", f"127.0.0.1:{port}", "--usage-interval", "0.5")
    assert admin_json(sock, "pools", "show", "pool1")["critical_threshold"] == 0.85  # kept in repfs.toml


@pytest.mark.standalone
def test_remove_is_refused_while_a_pool_holds_the_only_copy(repfs_factory: Callable[..., Repfs], sockdir: Path) -> None:
    fs = repfs_factory(npools=2, replicas=1)
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock))
    files = write_files(fs, 4, 3)
    only = len(fs.pool_keys(fs.pools[0]))
    assert only > 0
    code, err = curl(sock, "DELETE", "/v1/pools/pool1")
    assert code == 409 and f"holds the only copy of {only} blocks" in err["error"], err
    res = admin(sock, "pools", "remove", "pool1")
    assert res.returncode == 5 and "only copy" in res.stderr
    assert "pool1" in (fs.fs_dir / "repfs.toml").read_text()
    # drained, it holds nothing any more and may go (replicas 1: one pool left is enough)
    assert admin_json(sock, "pools", "drain", "pool1", "--wait", "--timeout", "60")["drain"]["done"]
    assert fs.pool_keys(fs.pools[0]) == set() and len(fs.pool_keys(fs.pools[1])) >= only
    code, answer = curl(sock, "DELETE", "/v1/pools/pool1")
    assert code == 200, answer
    code, err = curl(sock, "DELETE", "/v1/pools/pool2")
    assert code == 409 and "would leave 0 pools" in err["error"]
    check_files(fs, files)


@pytest.mark.standalone
def test_a_drain_goes_on_after_the_daemon_is_killed_then_the_pool_is_removed(
    repfs_factory: Callable[..., Repfs], sockdir: Path
) -> None:
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock))
    files = write_files(fs, 12, 4)
    held = len(fs.pool_keys(fs.pools[2]))
    fs.remount("--admin-socket", str(sock), "--repair-rate", "256K")  # slow: the kill comes mid-drain
    answer = admin_json(sock, "pools", "drain", "pool3")
    assert answer["queued"] >= held
    assert 'draining = true' in (fs.fs_dir / "repfs.toml").read_text()
    assert wait_for(lambda: len(fs.pool_keys(fs.pools[2])) < held, 60)
    fs.kill9()
    left = len(fs.pool_keys(fs.pools[2]))
    assert 0 < left < held, (left, held)
    fs.mount("--admin-socket", str(sock))
    assert admin_json(sock, "pools", "show", "pool3")["state"] == "draining"
    done = admin_json(sock, "pools", "drain", "pool3", "--wait", "--timeout", "120")
    assert done["drain"]["done"] and done["drain"]["remaining"] == 0
    assert fs.pool_keys(fs.pools[2]) == set()
    check_files(fs, files)  # read while draining pools serve reads
    assert admin_json(sock, "pools", "remove", "pool3")["pool"] == "pool3"
    assert "pool3" not in (fs.fs_dir / "repfs.toml").read_text()
    shutil.rmtree(fs.pools[2])
    fs.remount("--admin-socket", str(sock))
    shutil.rmtree(fs.fs_dir / "cache" / "clean")
    (fs.fs_dir / "cache" / "clean").mkdir()
    check_files(fs, files)
    assert [p["name"] for p in admin_json(sock, "pools", "list")["pools"]] == ["pool1", "pool2"]
    fs.expect_log(r"lease|unclean|journal")


def test_a_pool_of_another_filesystem_or_with_other_files_is_refused(
    repfs_factory: Callable[..., Repfs], sockdir: Path
) -> None:
    fs = repfs_factory()
    other = repfs_factory("other")
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock))
    code, err = curl(sock, "POST", "/v1/pools", {"name": "x", "url": f"file://{other.pools[0]}"})
    assert code == 409 and "belongs to filesystem" in err["error"], err
    stray = fs.base / "stray"
    stray.mkdir()
    (stray / "photo.jpg").write_bytes(b"x")
    code, err = curl(sock, "POST", "/v1/pools", {"name": "x", "url": f"file://{stray}"})
    assert code == 409 and "is not empty" in err["error"], err
    code, err = curl(sock, "POST", "/v1/pools", {"name": "x", "url": f"file://{fs.pools[0]}/inner"})
    assert code == 400 and "overlap" in err["error"], err
    code, err = curl(sock, "POST", "/v1/pools", {"name": "x", "url": "s3+http://127.0.0.1:1/b", "secret_key": "s"})
    assert code == 400 and "secrets do not travel" in err["error"]
    assert [p["name"] for p in admin_json(sock, "pools", "list")["pools"]] == ["pool1", "pool2", "pool3"]
    assert not (stray / "superblock").exists()


@pytest.mark.standalone
def test_space_freed_on_full_pools_is_used_again_at_once(repfs_factory: Callable[..., Repfs], sockdir: Path) -> None:
    """Every pool critical, writes ENOSPC; files deleted: repfs's own deletes count at once,
    so new writes succeed within seconds, not at the next usage measurement (60 s)."""
    fs = repfs_factory(npools=2, replicas=1)
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--usage-interval", "60")
    digests = write_files(fs, 8, 3)
    assert wait_for(lambda: all(p["used"] for p in admin_json(sock, "pools", "list")["pools"]), 30)
    for p in admin_json(sock, "pools", "list")["pools"]:  # each pool just past its critical threshold
        admin_json(sock, "pools", "set", p["name"], "--capacity", str(int(p["used"] / 0.92)))
    assert all(p["full"] for p in admin_json(sock, "pools", "list")["pools"])
    with pytest.raises(OSError) as exc, open(fs.mnt / "no-room", "wb") as f:
        f.write(os.urandom(200_000))
    assert exc.value.errno == 28  # ENOSPC
    for name in list(digests)[:6]:
        (fs.mnt / name).unlink()
    started = time.monotonic()

    def writes() -> bool:
        try:
            (fs.mnt / "room-again").write_bytes(os.urandom(100_000))
        except OSError:
            return False
        return True

    assert wait_for(writes, timeout=20), admin_json(sock, "pools", "list")
    assert time.monotonic() - started < 20
    check_files(fs, dict(list(digests.items())[6:]))


def test_a_pool_holding_packs_is_drained_removed_and_deleted_and_nothing_is_lost(
    repfs_factory: Callable[..., Repfs], sockdir: Path
) -> None:
    """With packs on, pool3's share of the data is in journal packs, not block objects: the
    drain writes those blocks out elsewhere, and once pool3 is removed and deleted every
    file still reads, from the other pools alone."""
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--pack-max", "1M")
    files = write_files(fs, 12, 5)
    assert fs.all_keys() == set()  # every block travelled in a pack
    assert any((fs.pools[2] / "journal").iterdir())
    done = admin_json(sock, "pools", "drain", "pool3", "--wait", "--timeout", "120")
    assert done["drain"]["done"] and done["drain"]["remaining"] == 0, done
    assert admin_json(sock, "pools", "remove", "pool3")["pool"] == "pool3"
    shutil.rmtree(fs.pools[2])
    fs.remount("--admin-socket", str(sock), "--pack-max", "1M")
    shutil.rmtree(fs.fs_dir / "cache" / "clean")
    (fs.fs_dir / "cache" / "clean").mkdir()
    check_files(fs, files)
    fs.unmount()
    res = run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode == 0 and "0 problems found" in res.stdout, res.stdout + res.stderr
