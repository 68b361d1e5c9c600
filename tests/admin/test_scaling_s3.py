"""Scaling at runtime on real SeaweedFS servers: a fourth pool added while a writer keeps
writing (only the blocks whose placement changed move), and a pool drained, removed and
its server stopped (everything still reads)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.admin.rig import admin_json, curl
from tests.helpers import wait_for
from tests.s3.rig import S3Repfs
from tests.s3.test_failover import block_holders, misplaced
from tests.seaweed import WeedServer

pytestmark = pytest.mark.timeout(300)

Factory = Callable[..., S3Repfs]
Servers = Callable[..., list[WeedServer]]


def write(path: Path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def check(fs: S3Repfs, digests: dict[str, str]) -> None:
    for name, digest in digests.items():
        assert hashlib.sha256((fs.mnt / name).read_bytes()).hexdigest() == digest, name


def top(key: str, pools: list[str], n: int) -> set[str]:
    return set(rank_pools(block_id_from_key(key), [(p, 1.0) for p in pools])[:n])


def settled(sock: Path) -> bool:
    deficit: int = curl(sock, "GET", "/v1/repair")[1]["deficit"]
    return deficit == 0


@pytest.mark.standalone
def test_a_fourth_pool_added_under_a_writer_takes_exactly_the_blocks_that_move(
    weed_factory: Servers, s3fs_factory: Factory, sockdir: Path
) -> None:
    servers = weed_factory(4)
    fs = s3fs_factory(servers[:3])
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--repair-rate", "0", "--usage-interval", "2")
    rng = random.Random(7)
    digests = {f"base{i}": write(fs.mnt / f"base{i}", rng.randbytes(rng.randint(100_000, 300_000))) for i in range(50)}
    assert wait_for(lambda: settled(sock), 60)
    before = block_holders(fs)
    assert len(before) > 150 and all(len(h) == 2 for h in before.values())

    stop = threading.Event()
    written: dict[str, str] = {}
    failures: list[BaseException] = []

    def writer() -> None:
        wrng = random.Random(8)
        try:
            for i in range(400):
                if stop.is_set():
                    return
                written[f"w{i}"] = write(fs.mnt / f"w{i}", wrng.randbytes(wrng.randint(50_000, 200_000)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wait_for(lambda: len(written) >= 3, 60)
        bucket = servers[3].make_bucket()
        body = {"name": "s3p4", "url": servers[3].url(bucket, fs.prefix), "credentials_file": str(fs.credentials)}
        code, answer = curl(sock, "POST", "/v1/pools", body)
        assert code == 201, answer
        assert answer["initialised"] is True
        during = len(written)
        fs.servers.append(servers[3])
        fs.buckets.append(bucket)
        # the writer goes on while the blocks move
        assert wait_for(lambda: settled(sock) or len(written) >= during + 5, 120)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not failures, failures
    assert len(written) > during, "the writer made no progress during the rebalance"
    assert wait_for(lambda: settled(sock), 120), curl(sock, "GET", "/v1/repair")
    four = ["s3p1", "s3p2", "s3p3", "s3p4"]
    must_move = {k for k in before if top(k, four, 2) != top(k, four[:3], 2)}
    after = block_holders(fs)
    moved = {k for k in before if after.get(k) != before[k]}
    assert moved == must_move  # exactly the blocks whose placement changed, no others
    assert answer["queued"] >= len(must_move)
    assert 0.25 < len(moved) / len(before) < 0.75, (len(moved), len(before))
    assert misplaced(fs) == []
    assert all("s3p4" in after[k] for k in must_move)
    check(fs, digests | written)
    pools = admin_json(sock, "pools", "list")["pools"]
    assert [p["name"] for p in pools] == four and {p["state"] for p in pools} == {"up"}
    assert 's3p4' in (fs.fs_dir / "repfs.toml").read_text()


@pytest.mark.standalone
def test_a_drained_and_removed_pool_can_go_away(weed_factory: Servers, s3fs_factory: Factory, sockdir: Path) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers)
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--repair-rate", "0")
    rng = random.Random(9)
    digests = {f"f{i}": write(fs.mnt / f"f{i}", rng.randbytes(rng.randint(100_000, 300_000))) for i in range(30)}
    assert wait_for(lambda: settled(sock), 60)
    held = [k for k, h in block_holders(fs).items() if "s3p3" in h]
    assert held
    code, err = curl(sock, "DELETE", "/v1/pools/s3p3")
    assert code == 409 and "drain it first" in err["error"]
    done = admin_json(sock, "pools", "drain", "s3p3", "--wait", "--timeout", "180")
    assert done["drain"]["done"] and done["state"] == "draining"
    assert not [k for k, h in block_holders(fs).items() if "s3p3" in h]
    assert all(len(h) == 2 for h in block_holders(fs).values())
    check(fs, digests)
    assert curl(sock, "DELETE", "/v1/pools/s3p3")[0] == 200
    servers[2].stop()
    more = {"after": write(fs.mnt / "after", rng.randbytes(400_000))}
    fs.remount("--admin-socket", str(sock))
    shutil.rmtree(fs.fs_dir / "cache" / "clean")
    (fs.fs_dir / "cache" / "clean").mkdir()
    check(fs, digests | more)
    assert [p["name"] for p in admin_json(sock, "pools", "list")["pools"]] == ["s3p1", "s3p2"]
