"""A pool that is alive but does not answer: a SeaweedFS server frozen with SIGSTOP (the
usual picture of an overloaded or partitioned server). Nothing may wait for it past a
deadline sized to the work: reads ask the next pool, writes go to a stand-in, the pool
is down within seconds, and it is verified and used again once it answers."""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.admin.rig import admin
from tests.helpers import Repfs, is_mounted, run_repfs, wait_for
from tests.s3.rig import S3Repfs
from tests.s3.test_failover import digest, logged, write_synced
from tests.seaweed import WeedServer

pytestmark = pytest.mark.timeout(300)

Factory = Callable[..., S3Repfs]
Servers = Callable[..., list[WeedServer]]
BOUND = 2.0  # seconds: no read, write+fsync or stat may take longer with one pool frozen
# seconds for recover, an online scrub, an admin call, SIGTERM and fsck with one pool frozen:
# generous against machine noise, far below the 60 s request timeouts they used to wait for
OP_BOUND = 25.0


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


def test_scrub_admin_sigterm_fsck_and_recover_with_a_frozen_server_finish_within_bounds(
    weed_factory: Servers, s3fs_factory: Factory
) -> None:
    servers = weed_factory(3)
    fs = s3fs_factory(servers, block_size="256K")
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--heartbeat", "2", "--admin-socket", str(sock))
    data = {f"f{i}": random.Random(i).randbytes(600_000 + i) for i in range(6)}
    for name, content in data.items():
        write_synced(fs.mnt / name, content)
    fs.expect_log(r"s3p1")
    took: dict[str, float] = {}
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(what: str, fn: Callable[[], subprocess.CompletedProcess[str]]) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        results[what] = fn()
        took[what] = time.monotonic() - start
        return results[what]

    with frozen(servers[0]):
        res = run("admin status", lambda: admin(sock, "status", "--json"))
        assert res.returncode == 0, res.stderr
        assert {p["name"] for p in json.loads(res.stdout)["pools"]} == {"s3p1", "s3p2", "s3p3"}
        res = run("online scrub", lambda: admin(sock, "scrub", "--rate", "0", "--json"))
        assert res.returncode in (0, 1), res.stdout + res.stderr  # 1: blocks left short while s3p1 is down
        assert json.loads(res.stdout)["report"]["unrecoverable"] == 0, res.stdout
        assert fs.proc is not None
        start = time.monotonic()
        fs.proc.send_signal(signal.SIGTERM)
        code = fs.proc.wait(timeout=120)
        took["SIGTERM"] = time.monotonic() - start
        fs.proc = None
        Repfs.live.discard(fs)
        assert code == 0, fs.log_tail()
        assert not is_mounted(fs.mnt)
        key = str(fs.key)
        res = run("fsck", lambda: run_repfs("fsck", str(fs.fs_dir), "--key-file", key, timeout=120))
        assert res.returncode in (0, 1), res.stdout + res.stderr  # copies the frozen pool missed are reported
        res = run("recover", lambda: run_repfs("recover", str(fs.fs_dir), "--key-file", key, "--force", timeout=120))
        assert res.returncode == 0, res.stdout + res.stderr
    print(f"frozen pool: {', '.join(f'{k} {v:.2f} s' for k, v in took.items())}")
    slow = {op: s for op, s in took.items() if s > OP_BOUND}
    assert not slow, f"with a frozen pool these took longer than {OP_BOUND} s: {slow} (all: {took})"
    fs.mount("--heartbeat", "2")  # on the recovered metadata
    for name, content in data.items():
        assert (fs.mnt / name).read_bytes() == content, name


# What the daemon logs when a pool misses a deadline (is suspected), a heartbeat, or goes down.
SUSPICION = re.compile(
    r"is slow to answer|has not stored|missed its deadline|abandoned|missed heartbeat|is now (down|verifying|failed)"
)
WRITERS = 8
PER_WRITER = 96 << 20  # two blocks each (the second half full): enough for each pool to learn its pace


def test_mkfs_with_a_frozen_server_names_the_pool_and_the_step_and_writes_nothing(
    weeds: list[WeedServer], s3fs_factory: Factory
) -> None:
    fs = s3fs_factory(weeds, mkfs=False)
    with frozen(weeds[1]):
        start = time.monotonic()
        res = run_repfs(*fs.mkfs_args())
        took = time.monotonic() - start
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [
        f"repfs: error: pool s3p2 ({fs.pool_urls[1]}) did not answer within 30 s (checking its bucket)"
    ], res.stderr
    assert 29 < took < 29 + OP_BOUND, took
    assert not fs.fs_dir.exists()
    assert all(not s.objects(b) for s, b in zip(weeds, fs.buckets, strict=True))


def test_no_pool_is_suspected_under_load_with_64m_blocks(weeds: list[WeedServer], s3fs_factory: Factory) -> None:
    fs = s3fs_factory(weeds, block_size="64M")
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--heartbeat", "2", "--admin-socket", str(sock), "--cache-size", "2G", "--max-dirty", "1G")
    chunk = random.Random(7).randbytes(8 << 20)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with open(fs.mnt / f"w{i}", "wb") as f:
                for n in range(PER_WRITER // len(chunk)):
                    f.write(bytes([i, n]) + chunk[2:])
                os.fsync(f.fileno())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    took = time.monotonic() - start
    print(f"{WRITERS} writers × {PER_WRITER >> 20} MiB with fsync, 64 MiB blocks: {took:.1f} s")
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    res = admin(sock, "status", "--json")
    assert res.returncode == 0, res.stderr
    states = {p["name"]: p["state"] for p in json.loads(res.stdout)["pools"]}
    assert states == {"s3p1": "up", "s3p2": "up", "s3p3": "up"}, states
    suspicions = [line for line in fs.log_text().splitlines() if SUSPICION.search(line)]
    assert not suspicions, "healthy pools under load were suspected:\n" + "\n".join(suspicions[:20])
    first = (fs.mnt / "w3").open("rb").read(len(chunk))
    assert first == bytes([3, 0]) + chunk[2:]


def test_a_paused_daemon_suspects_no_pool(weeds: list[WeedServer], s3fs_factory: Factory) -> None:
    """The daemon itself stopped (a VM paused, a machine swapping, SIGSTOP here) while its
    requests are in flight: the pools answered in time, the client did not look. No pool
    may be taken for slow, and the writes go on as if nothing happened."""
    fs = s3fs_factory(weeds)
    fs.mount("--heartbeat", "2")
    assert fs.proc is not None
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set():
                write_synced(fs.mnt / f"p{n % 50}", bytes([n % 256]) * (64 << 10))
                written.append(n)
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def wrote(n: int) -> bool:
        return wait_for(lambda: len(written) >= n, timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wrote(20), errors
        for _ in range(4):
            before = len(written)
            os.kill(fs.proc.pid, signal.SIGSTOP)
            time.sleep(1.5)
            os.kill(fs.proc.pid, signal.SIGCONT)
            assert wrote(before + 10), errors
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert not thread.is_alive()
    suspicions = [line for line in fs.log_text().splitlines() if SUSPICION.search(line)]
    assert not suspicions, "a paused daemon suspected healthy pools:\n" + "\n".join(suspicions[:20])
    last = written[-1]
    assert (fs.mnt / f"p{last % 50}").read_bytes() == bytes([last % 256]) * (64 << 10)
