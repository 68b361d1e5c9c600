"""A local pool on a hung disk: its directory lies on a FUSE mount (bench/passthrough.py, a
plain passthrough of a temporary directory, run as a process of its own) whose daemon is
frozen with SIGSTOP, the picture of an NFS server gone or a frozen FUSE filesystem. It must
behave like a frozen S3 server (tests/s3/test_hung.py): no read, write+fsync or stat waits
for it past a deadline, it is down within seconds, umount and mount finish within bounds
(the threads stuck in it are abandoned, never waited for), and once it is thawed it is
verified, caught up, and every fsync'd byte is there.

A process that touches a frozen FUSE mount blocks in the kernel until the mount's daemon
runs again: this test never looks at the frozen directory while it is frozen, and the
fixture thaws the daemon before it unmounts the lower mount, whatever happened.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.admin.rig import admin
from tests.helpers import Repfs, detach, is_mounted, run_repfs, wait_for

pytestmark = pytest.mark.timeout(240)

PASSTHROUGH = Path(__file__).resolve().parents[2] / "bench" / "passthrough.py"
BOUND = 2.0  # seconds: no read, write+fsync or stat may take longer with the pool frozen
DOWN_BOUND = 10.0  # seconds from the freeze until the pool is down
MOUNT_BOUND = 30.0  # seconds for umount (daemon gone) and for mount with the pool frozen
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # in the child between fork and exec: killed even when stopped
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LowerMount:
    """bench/passthrough.py mirroring `base/src` on `base/mnt`, in a process of its own."""

    def __init__(self, base: Path) -> None:
        self.source = base / "src"
        self.mnt = base / "mnt"
        self.log = base / "passthrough.log"
        self.source.mkdir(parents=True)
        self.mnt.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(PASSTHROUGH), str(self.source), str(self.mnt)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        ok = wait_for(lambda: is_mounted(self.mnt) or self.proc is None or self.proc.poll() is not None, 30)
        assert ok and is_mounted(self.mnt), f"the passthrough did not mount: {self.log.read_text(errors='replace')}"

    def _state(self) -> str:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True
        assert wait_for(lambda: self._state() == "T", 5), "the passthrough did not stop"

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """Thaw, then unmount (lazily as a last resort): nothing is left mounted or frozen."""
        self.thaw()
        try:
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, timeout=30, check=False)
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            if is_mounted(self.mnt):
                detach(self.mnt)


@pytest.fixture
def lower(tmp_path: Path) -> Iterator[LowerMount]:
    """Requested before `repfs_factory`, so torn down after it: thawed, repfs unmounted, then this."""
    mount = LowerMount(tmp_path / "lower")
    try:
        mount.start()
        yield mount
    finally:
        mount.stop()


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def timed_umount(fs: Repfs) -> tuple[float, subprocess.Popen[bytes] | None]:
    """Seconds `repfs umount` took (the mount is gone, everything stored or kept, the lock
    free), and the daemon's process if it has not exited yet. A process that closes a file
    on a frozen FUSE mount waits in the kernel (FLUSH cannot be interrupted) until that mount
    answers, and exiting closes the files its abandoned threads still hold: the old daemon
    may linger in the kernel until the lower mount is thawed. It serves nothing meanwhile."""
    assert fs.proc is not None
    proc, fs.proc = fs.proc, None
    Repfs.live.discard(fs)
    start = time.monotonic()
    res = run_repfs("umount", str(fs.mnt), timeout=MOUNT_BOUND)
    took = time.monotonic() - start
    assert res.returncode == 0, res.stdout + res.stderr
    assert not is_mounted(fs.mnt)
    try:
        assert proc.wait(timeout=5) == 0
    except subprocess.TimeoutExpired:
        return took, proc
    return took, None


def read_back(path: Path, content: bytes) -> float:
    """Seconds a whole read of `path` took; it must read back as `content`."""
    start = time.monotonic()
    got = path.read_bytes()
    took = time.monotonic() - start
    assert got == content, path
    return took


def logged(fs: Repfs, pattern: str) -> bool:
    return re.search(pattern, fs.log_text()) is not None


def misplaced(fs: Repfs) -> list[str]:
    """Block keys not held by exactly their target pools (the first `replicas` of their order)."""
    where: dict[str, set[str]] = {}
    for pool in fs.pools:
        for key in fs.pool_keys(pool):
            where.setdefault(key, set()).add(pool.name)
    weights = [(p.name, 1.0) for p in fs.pools]
    return [k for k, held in where.items() if held != set(rank_pools(block_id_from_key(k), weights)[: fs.replicas])]


def deficit(sock: Path) -> int:
    res = admin(sock, "repair", "status", "--json")
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)["deficit"])


@pytest.mark.standalone
def test_a_local_pool_on_a_frozen_fuse_mount_holds_up_nothing(
    lower: LowerMount, repfs_factory: Callable[..., Repfs]
) -> None:
    fs = repfs_factory(mkfs=False, block_size="256K")
    fs.pools[0] = lower.mnt / "pool1"  # pool1's directory is on the lower FUSE mount
    fs.mkfs()
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    args = ("--heartbeat", "2", "--admin-socket", str(sock))
    fs.expect_log(r"\bpool1\b")  # its trouble is logged, as it should be
    fs.mount(*args)
    data = {f"f{i}": random.Random(i).randbytes(700_000 + i) for i in range(8)}
    for name, content in data.items():
        write_synced(fs.mnt / name, content)
    assert fs.pool_keys(fs.pools[0]), "pool1 should hold blocks"
    fs.remount()  # cold caches: every read goes to the pools
    worst: dict[str, float] = {}
    lingering: subprocess.Popen[bytes] | None = None

    def note(op: str, seconds: float) -> None:
        worst[op] = max(worst.get(op, 0.0), seconds)

    lower.freeze()
    started = time.monotonic()
    try:
        for name, content in data.items():
            note("read", read_back(fs.mnt / name, content))
        for i in range(6):
            content = random.Random(100 + i).randbytes(300_000 + i)
            note("write+fsync", timed(lambda i=i, c=content: write_synced(fs.mnt / f"new{i}", c)))  # type: ignore[misc]
            data[f"new{i}"] = content
        for name in data:
            note("stat", timed(lambda n=name: os.stat(fs.mnt / n)))  # type: ignore[misc]
        assert wait_for(lambda: logged(fs, r"pool pool1 is now down"), 20), fs.log_tail()
        down_after = time.monotonic() - started
        note("write+fsync, pool down", timed(lambda: write_synced(fs.mnt / "after-down", b"d" * 400_000)))
        data["after-down"] = b"d" * 400_000
        (fs.mnt / "unsynced").write_bytes(b"u" * 500_000)  # stored by umount, on the answering pools
        data["unsynced"] = b"u" * 500_000
        worst["umount"], lingering = timed_umount(fs)
        worst["mount"] = timed(lambda: fs.mount(*args, timeout=45))
        assert logged(fs, r"pool pool1 is unreachable at mount; it starts out down"), fs.log_tail()
        for name, content in data.items():
            note("read, remounted", read_back(fs.mnt / name, content))
    finally:
        lower.thaw()
    if lingering is not None:  # it exits as soon as the frozen mount answers its last close
        assert lingering.wait(timeout=30) == 0
    print(f"frozen local pool: {', '.join(f'{k} {v:.2f} s' for k, v in worst.items())}; down after {down_after:.1f} s")
    slow = {op: s for op, s in worst.items() if op not in ("umount", "mount") and s > BOUND}
    assert not slow, f"with a frozen pool these took longer than {BOUND} s: {slow} (all: {worst})"
    assert down_after < DOWN_BOUND, f"the frozen pool was marked down only after {down_after:.1f} s"
    assert worst["umount"] < MOUNT_BOUND and worst["mount"] < MOUNT_BOUND, worst
    # thawed: verified (down -> verifying -> up), caught up, and every byte is there
    assert wait_for(lambda: logged(fs, r"pool pool1 is now up: challenge passed"), 60), fs.log_tail()
    assert wait_for(lambda: not misplaced(fs) and deficit(sock) == 0, 60), (misplaced(fs)[:5], deficit(sock))
    fs.remount()
    for name, content in data.items():
        assert (fs.mnt / name).read_bytes() == content, name
