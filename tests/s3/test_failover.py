"""Failover on real S3 servers (SeaweedFS, and Ceph RGW in one test): a stopped server is a
down pool, an object written behind repfs's back is a damaged replica."""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Callable

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.ceph import CephCluster
from tests.helpers import wait_for
from tests.s3.rig import S3Repfs
from tests.seaweed import WeedServer

pytestmark = pytest.mark.timeout(300)

MB = 1 << 20
Factory = Callable[..., S3Repfs]
Servers = Callable[..., list[WeedServer]]


def pool_names(fs: S3Repfs) -> list[str]:
    return [f"s3p{i + 1}" for i in range(len(fs.servers))]


def block_holders(fs: S3Repfs) -> dict[str, set[str]]:
    """Block key → the pools holding an object for it."""
    where: dict[str, set[str]] = {}
    for pool, objects in fs.bucket_objects().items():
        for name in objects:
            key = name[len(fs.prefix) + 1 :]
            if key.startswith("blocks/"):
                where.setdefault(key, set()).add(pool)
    return where


def misplaced(fs: S3Repfs) -> list[str]:
    """Block keys not held by exactly the first `replicas` pools of their placement order."""
    weights = [(n, 1.0) for n in pool_names(fs)]
    return [
        key
        for key, held in block_holders(fs).items()
        if held != set(rank_pools(block_id_from_key(key), weights)[: fs.replicas])
    ]


def logged(fs: S3Repfs, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, fs.log_text())


def write_synced(path: os.PathLike[str] | str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def digest(path: os.PathLike[str] | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    return h.hexdigest()


def test_a_server_stopped_while_writing_200_mb_loses_nothing_and_is_verified_back(
    weed_factory: Servers, s3fs_factory: Factory
) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, block_size="1M")
    fs.mount("--heartbeat", "1")
    small = {f"small{i}": random.Random(i).randbytes(300_000 + i) for i in range(5)}
    for name, data in small.items():
        write_synced(fs.mnt / name, data)
    victim, victim_pool = servers[1], "s3p2"
    fs.expect_log(rf"{victim_pool}|Connection refused|Max retries")

    rng = random.Random(200)
    want = hashlib.sha256()
    written = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open(fs.mnt / "big", "wb") as f:
                for i in range(200):
                    chunk = rng.randbytes(MB)
                    want.update(chunk)
                    f.write(chunk)
                    if i == 60:
                        written.set()
                f.flush()
                os.fsync(f.fileno())  # must succeed with the server stopped
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(120)
    stopped_at = time.monotonic()
    victim.stop()
    thread.join(240)
    assert not thread.is_alive() and not errors, errors
    assert wait_for(lambda: logged(fs, rf"pool {victim_pool} is now down") is not None, 60), fs.log_tail()
    print(f"pool marked down {time.monotonic() - stopped_at:.1f} s after its server stopped (upper bound)")

    assert digest(fs.mnt / "big") == want.hexdigest()  # everything reads while it is down
    for name, data in small.items():
        assert (fs.mnt / name).read_bytes() == data

    victim.start()
    assert wait_for(lambda: logged(fs, rf"pool {victim_pool} is now up: challenge passed"), 90), fs.log_tail()
    text = fs.log_text()
    assert text.index(f"pool {victim_pool} is now verifying") < text.index(f"pool {victim_pool} is now up")
    assert wait_for(lambda: not misplaced(fs), 120, interval=1.0), f"{len(misplaced(fs))} blocks not home"
    assert all(len(held) == 2 for held in block_holders(fs).values())
    fs.remount()
    assert digest(fs.mnt / "big") == want.hexdigest()
    for name, data in small.items():
        assert (fs.mnt / name).read_bytes() == data


@pytest.mark.standalone
def test_a_ceph_rgw_pool_whose_gateway_stops_while_writing_loses_nothing_and_is_verified_back(
    ceph: CephCluster, weed_factory: Servers, s3fs_factory: Factory
) -> None:
    weeds = weed_factory(2, like=ceph)  # one identity for the three pools
    fs = s3fs_factory([weeds[0], ceph, weeds[1]], block_size="1M")
    victim_pool = "s3p2"  # a bucket on Ceph RGW
    fs.mount("--heartbeat", "1")
    small = {f"small{i}": random.Random(i).randbytes(200_000 + i) for i in range(4)}
    for name, data in small.items():
        write_synced(fs.mnt / name, data)
    assert any(victim_pool in held for held in block_holders(fs).values())
    fs.expect_log(rf"{victim_pool}|Connection refused|Max retries")

    rng = random.Random(48)
    want = hashlib.sha256()
    written = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open(fs.mnt / "big", "wb") as f:
                for i in range(48):
                    chunk = rng.randbytes(MB)
                    want.update(chunk)
                    f.write(chunk)
                    if i == 12:
                        written.set()
                f.flush()
                os.fsync(f.fileno())  # must succeed with the gateway stopped
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(60)
        ceph.stop_rgw()
        thread.join(120)
        assert not thread.is_alive() and not errors, errors
        assert wait_for(lambda: logged(fs, rf"pool {victim_pool} is now down") is not None, 60), fs.log_tail()
        assert logged(fs, rf"cannot store block \w+ on pool {victim_pool}"), "the gateway stopped after the writes"
        assert digest(fs.mnt / "big") == want.hexdigest()  # everything reads while it is down
        for name, data in small.items():
            assert (fs.mnt / name).read_bytes() == data
    finally:
        thread.join(120)
        if not ceph.rgw_running:
            ceph.start_rgw()  # the cluster is shared by the session

    assert wait_for(lambda: logged(fs, rf"pool {victim_pool} is now up: challenge passed"), 90), fs.log_tail()
    text = fs.log_text()
    assert text.index(f"pool {victim_pool} is now verifying") < text.index(f"pool {victim_pool} is now up")
    assert wait_for(lambda: not misplaced(fs), 120, interval=1.0), f"{len(misplaced(fs))} blocks not home"
    assert all(len(held) == 2 for held in block_holders(fs).values())
    fs.remount()
    assert digest(fs.mnt / "big") == want.hexdigest()
    for name, data in small.items():
        assert (fs.mnt / name).read_bytes() == data


@pytest.mark.standalone
def test_an_object_overwritten_behind_repfs_is_repaired_and_a_pool_failing_its_challenge_is_failed(
    weed_factory: Servers, s3fs_factory: Factory
) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers)
    fs.mount("--heartbeat", "1", "--challenge-size", "all")
    data = os.urandom(24 * 64 * 1024)  # enough blocks that every pool is first for one, second for another
    write_synced(fs.mnt / "f", data)
    fs.remount("--heartbeat", "1", "--challenge-size", "all")  # a cold cache: reads go to the pools
    weights = [(n, 1.0) for n in pool_names(fs)]
    by_pool = dict(zip(pool_names(fs), zip(servers, fs.buckets, strict=True), strict=True))
    keys = sorted(block_holders(fs))
    ranks = {k: rank_pools(block_id_from_key(k), weights) for k in keys}
    # a pool that reads try first for one block (`read_key`) and second for another
    first_pool = next(r[0] for r in ranks.values() if any(o[1] == r[0] for o in ranks.values()))
    read_key = next(k for k in keys if ranks[k][0] == first_pool)
    server, bucket = by_pool[first_pool]
    name = f"{fs.prefix}/{read_key}"
    good = server.get_object(bucket, name)
    server.put_object(bucket, name, b"written behind repfs's back")
    fs.expect_log(rf"block {block_id_from_key(read_key).hex()[:12]}")
    assert (fs.mnt / "f").read_bytes() == data
    assert wait_for(lambda: server.get_object(bucket, name) == good, 30), "the damaged copy was not repaired"

    # damage a copy that reads never touch (second in its order), then take that pool down and back
    key = next(k for k in keys if ranks[k][1] == first_pool)
    server.put_object(bucket, f"{fs.prefix}/{key}", b"damaged while nobody looked")
    fs.expect_log(rf"pool {first_pool}|Connection refused|Max retries")
    server.stop()
    assert wait_for(lambda: logged(fs, rf"pool {first_pool} is now down") is not None, 60), fs.log_tail()
    server.start()
    assert wait_for(lambda: logged(fs, rf"pool {first_pool} is now failed: challenge failed"), 90), fs.log_tail()
    assert logged(fs, rf"block {block_id_from_key(key).hex()[:12]} is corrupt")
    assert not logged(fs, rf"pool {first_pool} is now up")
    assert (fs.mnt / "f").read_bytes() == data
    assert server.get_object(bucket, f"{fs.prefix}/{key}") == b"damaged while nobody looked"  # left alone


def test_three_replicas_read_with_two_servers_down(weed_factory: Servers, s3fs_factory: Factory) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, replicas=3)
    fs.mount("--heartbeat", "1")
    files = {f"f{i}": random.Random(i).randbytes(200_000 + 999 * i) for i in range(6)}
    for name, data in files.items():
        write_synced(fs.mnt / name, data)
    assert all(len(held) == 3 for held in block_holders(fs).values())
    fs.remount("--heartbeat", "1")  # a cold cache
    fs.expect_log(r"s3p[12]|Connection refused|Max retries")
    servers[0].stop()
    servers[1].stop()
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data, name
    assert wait_for(lambda: logged(fs, r"pool s3p1 is now down") and logged(fs, r"pool s3p2 is now down"), 60)
    for name, data in files.items():  # and once they are known to be down
        assert (fs.mnt / name).read_bytes() == data, name


def test_recover_on_s3_pools_with_one_server_stopped(weed_factory: Servers, s3fs_factory: Factory) -> None:
    from tests.mount.test_recover import build_tree, lose_the_host, recover, snapshot_tree

    servers = weed_factory(3)
    fs = s3fs_factory(servers)
    fs.mount("--heartbeat", "1")
    build_tree(fs.mnt)
    want = snapshot_tree(fs.mnt)
    lose_the_host(fs)
    servers[2].stop()
    fs.expect_log(r"s3p3|Connection refused|Max retries")
    out = recover(fs)
    assert "up to change" in out
    fs.mount("--heartbeat", "1")
    assert snapshot_tree(fs.mnt) == want
