"""A pool that is alive but does not answer: a SeaweedFS server frozen with SIGSTOP (the
usual picture of an overloaded or partitioned server). Nothing may wait for it past a
deadline sized to the work: reads ask the next pool, writes go to a stand-in, the pool
is down within seconds, and it is verified and used again once it answers."""

from __future__ import annotations

import functools
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import run_repfs, wait_for
from tests.s3.rig import S3Repfs
from tests.s3.test_failover import digest, logged, write_synced
from tests.seaweed import WeedServer

pytestmark = pytest.mark.timeout(300)

Factory = Callable[..., S3Repfs]
Servers = Callable[..., list[WeedServer]]
BOUND = 2.0  # seconds: no read, write+fsync or stat may take longer with one pool frozen


@contextmanager
def frozen(server: WeedServer) -> Iterator[None]:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def test_a_frozen_server_holds_up_no_read_write_or_stat(weed_factory: Servers, s3fs_factory: Factory) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, block_size="256K")
    fs.mount("--heartbeat", "2")
    data = {f"f{i}": random.Random(i).randbytes(700_000 + i) for i in range(8)}
    for name, content in data.items():
        write_synced(fs.mnt / name, content)
    want = {name: digest(fs.mnt / name) for name in data}
    fs.remount("--heartbeat", "2")  # cold caches: every read goes to the pools
    fs.expect_log(r"s3p1")  # its trouble is logged, as it should be
    worst: dict[str, float] = {}
    with frozen(servers[0]):
        started = time.monotonic()
        for name in data:

            def read(n: str = name) -> bool:
                return digest(fs.mnt / n) == want[n]

            worst["read"] = max(worst.get("read", 0.0), timed(read))
            assert digest(fs.mnt / name) == want[name]
        for i in range(6):
            content = random.Random(100 + i).randbytes(300_000)
            worst["write+fsync"] = max(
                worst.get("write+fsync", 0.0), timed(functools.partial(write_synced, fs.mnt / f"new{i}", content))
            )
            data[f"new{i}"], want[f"new{i}"] = content, digest(fs.mnt / f"new{i}")
        for name in data:
            worst["stat"] = max(worst.get("stat", 0.0), timed(functools.partial(os.stat, fs.mnt / name)))
        assert wait_for(lambda: logged(fs, r"pool s3p1 is now down") is not None, timeout=20)
        down_after = time.monotonic() - started
        worst["write+fsync, pool down"] = timed(lambda: write_synced(fs.mnt / "after-down", b"x" * 100_000))
        data["after-down"], want["after-down"] = b"x" * 100_000, digest(fs.mnt / "after-down")
    print(f"frozen pool: worst {', '.join(f'{k} {v:.2f} s' for k, v in worst.items())}; down after {down_after:.1f} s")
    slow = {op: s for op, s in worst.items() if s > BOUND}
    assert not slow, f"with a frozen pool these took longer than {BOUND} s: {slow} (all: {worst})"
    assert down_after < 10.0, f"the frozen pool was marked down only after {down_after:.1f} s"
    # thawed: verified, used again, and every byte is there
    assert wait_for(lambda: logged(fs, r"pool s3p1 is now up") is not None, timeout=60), fs.log_tail()
    fs.remount("--heartbeat", "2")
    for name in data:
        assert digest(fs.mnt / name) == want[name], name


def test_umount_and_mount_with_a_frozen_server_finish_within_bounds(
    weed_factory: Servers, s3fs_factory: Factory
) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, block_size="256K")
    fs.mount("--heartbeat", "2")
    write_synced(fs.mnt / "kept", b"k" * 500_000)
    fs.expect_log(r"s3p1")
    with frozen(servers[0]):
        (fs.mnt / "unsynced").write_bytes(b"u" * 400_000)
        took = timed(fs.unmount)
        print(f"frozen pool: umount {took:.1f} s")
        assert took < 30.0, f"umount took {took:.1f} s"
        took = timed(lambda: fs.mount("--heartbeat", "2", timeout=45))
        print(f"frozen pool: mount {took:.1f} s")
        assert took < 30.0, f"mount took {took:.1f} s"
        assert logged(fs, r"s3p1.*(did not answer|down)") is not None
        assert (fs.mnt / "kept").read_bytes() == b"k" * 500_000
        assert (fs.mnt / "unsynced").read_bytes() == b"u" * 400_000
        took = timed(fs.unmount)
        assert took < 30.0, f"umount took {took:.1f} s"
    res = run_repfs("fsck", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode in (0, 1), res.stderr  # it finishes; copies the frozen pool missed are reported
