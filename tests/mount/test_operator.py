"""What operators do that must never lose data, hang or surprise: mkfs over a pool in use,
stacked and non-empty mount points, log rotation, mount options through mount(8), setup
errors that are one line and touch nothing, df, runtime pools, a new secret while mounted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.admin.conftest import sockdir
from tests.admin.rig import ADMIN, curl
from tests.helpers import Repfs, is_mounted, make_key, run_repfs, wait_for

__all__ = ["sockdir"]

pytestmark = pytest.mark.timeout(180)

Factory = Callable[..., Repfs]
HELPER = str(Path(sys.executable).parent / "mount.fuse.repfs")


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ADMIN, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# --- mkfs never wipes a pool that a mount is using ------------------------------------


@pytest.mark.standalone
def test_mkfs_force_refuses_a_pool_with_a_live_lease(repfs: Repfs, repfs_factory: Factory) -> None:
    with open(repfs.mnt / "precious", "wb") as f:
        f.write(b"keep me")
        f.flush()
        os.fsync(f.fileno())

    target = next(p for p in repfs.pools if repfs.pool_keys(p))  # a pool holding a copy

    def pool_state() -> tuple[set[str], bytes]:  # (the lease object changes: it is renewed)
        return repfs.pool_keys(target), (target / "superblock").read_bytes()

    before = pool_state()
    assert before[0]
    other = repfs_factory("other", mkfs=False)
    for key in (repfs.key, other.key):  # the same key names the holder; another key still refuses
        res = run_repfs(
            "mkfs", str(other.fs_dir), "--pool", f"file://{target}", "--replicas", "1",
            "--key-file", str(key), "--force",
        )  # fmt: skip
        assert res.returncode == 5, res.stderr
        assert res.stderr.count("\n") == 1 and "is in use" in res.stderr and "--force" not in res.stderr
        if key == repfs.key:
            assert f"pid {repfs.proc.pid if repfs.proc else 0}" in res.stderr and str(repfs.fs_dir) in res.stderr
    assert pool_state() == before
    assert (repfs.mnt / "precious").read_bytes() == b"keep me"
    assert not (other.fs_dir / "repfs.toml").exists()


# --- mount points -----------------------------------------------------------------------


def test_stacked_and_non_empty_mount_points_are_refused(repfs: Repfs, repfs_factory: Factory) -> None:
    other = repfs_factory("other")
    before = other.fs_dir_digest()
    res = run_repfs("mount", str(other.fs_dir), str(repfs.mnt), "--key-file", str(other.key))
    assert res.returncode == 2 and "already a mount point" in res.stderr and res.stderr.count("\n") == 1
    assert other.fs_dir_digest() == before  # nothing touched: no lease, no snapshot
    (other.mnt / "hidden").write_bytes(b"under the mount")
    res = run_repfs("mount", str(other.fs_dir), str(other.mnt), "--key-file", str(other.key))
    assert res.returncode == 2 and "not empty" in res.stderr and "--allow-non-empty" in res.stderr
    assert not is_mounted(other.mnt)
    other.mount("--allow-non-empty")
    assert not (other.mnt / "hidden").exists()
    (other.mnt / "inside").write_bytes(b"x")
    res = run_repfs("umount", str(repfs.mnt), timeout=60)  # the right daemon, at once
    assert res.returncode == 0, res.stderr
    repfs.proc = None
    other.unmount()
    assert (other.mnt / "hidden").read_bytes() == b"under the mount"


# --- logs -------------------------------------------------------------------------------


def test_sighup_keeps_the_mount_and_reopens_the_log(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    log = fs.fs_dir / "repfs.log"
    res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(fs.key))
    assert res.returncode == 0, res.stderr
    fs.logs.append(log)
    pid = int((fs.fs_dir / "mount.lock").read_text().split()[0])
    try:
        rotated = log.with_suffix(".log.1")
        log.rename(rotated)
        os.kill(pid, signal.SIGHUP)
        assert wait_for(lambda: log.exists() and "log file reopened" in log.read_text(), timeout=20)
        (fs.mnt / "after-hup").write_bytes(b"still mounted")
        assert is_mounted(fs.mnt) and (fs.mnt / "after-hup").read_bytes() == b"still mounted"
        assert "log file reopened" not in rotated.read_text()
        fs.logs.append(rotated)
    finally:
        res = run_repfs("umount", str(fs.mnt), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "unmounted cleanly" in log.read_text()


# --- mount(8) and fstab ---------------------------------------------------------------------


def _flags(mnt: Path) -> set[str]:
    target = str(mnt.absolute())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return set(fields[5].split(","))
    return set()


def test_the_mount_helper_passes_every_kernel_flag(repfs_factory: Factory, sockdir: Path) -> None:
    fs = repfs_factory()
    sock = sockdir / "h.sock"
    opts = f"rw,noauto,_netdev,x-systemd.automount,key_file={fs.key},cache_size=64M,admin_socket={sock}"
    opts += ",noexec,nosuid,nodev,noatime"
    fake = subprocess.run([HELPER, str(fs.fs_dir), str(fs.mnt), "-f", "-o", opts],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert fake.returncode == 0 and not is_mounted(fs.mnt), fake.stderr
    assert (
        f"--key-file {fs.key} --cache-size 64M --admin-socket {sock} -o rw,noexec,nosuid,nodev,noatime" in fake.stderr
    )
    assert "_netdev" not in fake.stderr and "noauto" not in fake.stderr
    res = subprocess.run([HELPER, str(fs.fs_dir), str(fs.mnt), "-o", opts], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    fs.logs.append(fs.fs_dir / "repfs.log")
    try:
        assert {"noexec", "nosuid", "nodev", "noatime"} <= _flags(fs.mnt)
        script = fs.mnt / "script.sh"
        script.write_text("#!/bin/sh\necho ran\n")
        script.chmod(0o755)
        with pytest.raises(PermissionError):  # noexec reached the kernel
            subprocess.run([str(script)], capture_output=True, timeout=30)
        assert curl(sock, "GET", "/v1/health")[0] == 200
    finally:
        assert run_repfs("umount", str(fs.mnt)).returncode == 0
    res = subprocess.run([HELPER, str(fs.fs_dir), str(fs.mnt), "-o", f"key_file={fs.key},ro"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    try:
        assert "ro" in _flags(fs.mnt)
        with pytest.raises(OSError) as exc:
            (fs.mnt / "nope").write_bytes(b"x")
        assert exc.value.errno == 30  # EROFS
    finally:
        assert run_repfs("umount", str(fs.mnt)).returncode == 0
    for bad, why in (("key_file", "needs a value"), (f"key_file={fs.key},noexecc", "unknown mount option 'noexecc'")):
        res = subprocess.run(
            [HELPER, str(fs.fs_dir), str(fs.mnt), "-o", bad], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 2 and why in res.stderr and res.stderr.count("\n") == 1, res.stderr


# --- setup errors: one line, exit 2, nothing written --------------------------------------


def test_setup_errors_are_one_line_and_touch_nothing(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    pools_before, dir_before = fs.pools_digest(), fs.fs_dir_digest()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cases = {
            "-o allow_otherr": (["-o", "allow_otherr"], "unknown mount option"),
            "-o fsname=x": (["-o", "fsname=x"], "set by repfs itself"),
            "metrics port in use": (["--metrics", f"127.0.0.1:{port}"], "cannot listen there"),
            "bad metrics": (["--metrics", "nowhere"], "--metrics"),
            "admin socket nowhere": (["--admin-socket", str(fs.key / "under-a-file" / "s")], "--admin-socket"),
        }
        for name, (args, why) in cases.items():
            for fg in ([], ["--foreground"]):
                res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(fs.key), *fg, *args)
                assert res.returncode == 2, f"{name}: {res.returncode} {res.stderr}"
                assert why in res.stderr and res.stderr.count("\n") == 1, f"{name}: {res.stderr!r}"
                assert "Traceback" not in res.stderr and not is_mounted(fs.mnt)
    finally:
        busy.close()
    log = fs.fs_dir / "repfs.log"
    assert not log.exists() or "Traceback" not in log.read_text()
    assert fs.pools_digest() == pools_before
    assert {k: v for k, v in fs.fs_dir_digest().items() if k != "repfs.log"} == dir_before
    weak = fs.base / "weak.key"
    weak.write_bytes(b"0123456789abcdef0123")
    weak.chmod(0o644)
    for args in (["--key-file", str(weak)], ["--key-file", str(fs.base / "missing")], ["--metrics", "1.2.3.4:x"]):
        res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), *(args if "--key-file" in args else
                                                                   ["--key-file", str(fs.key), *args]))  # fmt: skip
        assert res.returncode == 2 and res.stderr.count("\n") == 1, (args, res.stderr)


def test_a_second_mount_names_the_first(repfs: Repfs, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_repfs("mount", str(repfs.fs_dir), str(elsewhere), "--key-file", str(repfs.key))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert repfs.proc is not None and f"pid {repfs.proc.pid}" in res.stderr and str(repfs.mnt) in res.stderr


# --- df, runtime pools, a new secret while mounted ------------------------------------------


@pytest.mark.standalone
def test_pools_add_never_makes_a_directory_unless_asked(repfs_factory: Factory, sockdir: Path) -> None:
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock))
    missing = fs.base / "not-there"
    code, err = curl(sock, "POST", "/v1/pools", {"name": "extra", "url": f"file://{missing}"})
    assert code == 400 and "does not exist" in err["error"] and not missing.exists()
    res = admin("--socket", str(sock), "pools", "add", "extra", f"file://{missing}", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["exit"] == 2 and not missing.exists()  # errors as JSON
    for i in range(12):
        (fs.mnt / f"f{i}").write_bytes(os.urandom(100_000))
    res = admin("--socket", str(sock), "pools", "add", "extra", f"file://{missing}", "--create")
    assert res.returncode == 0, res.stderr
    assert (missing / "superblock").exists()
    log = fs.logs[-1]
    assert wait_for(lambda: "copies placed on new pools" in log.read_text(), timeout=60)
    text = log.read_text()
    added = [line for line in text.splitlines() if "pool extra" in line and "added" in line]
    assert len(added) == 1 and " INFO " in added[0], added  # one line, not a warning
    assert "repaired block" not in text  # moves are summed up, not reported as damage
    assert fs.pool_keys(missing)  # and the blocks did move


def test_a_new_secret_while_mounted(repfs_factory: Factory, sockdir: Path) -> None:
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--heartbeat", "0.5")
    (fs.mnt / "f").write_bytes(b"data")
    new = make_key(fs.base / "new.key")
    res = admin("--socket", str(sock), "keys", "passwd", "--key-file", str(new), "--new-key-file", str(fs.key))
    assert res.returncode == 3 and "does not unlock" in res.stderr  # the old secret is checked
    res = admin("--socket", str(sock), "keys", "passwd", "--key-file", str(fs.key), "--new-key-file", str(new))
    assert res.returncode == 0 and "every pool" in res.stdout, res.stderr
    superblock = (fs.pools[1] / "superblock").read_bytes()
    assert all((p / "superblock").read_bytes() == superblock for p in fs.pools)
    # a pool wiped while mounted gets the new superblock back, not the old one
    fs.expect_log(r"has no superblock")
    shutil.rmtree(fs.pools[0])
    fs.pools[0].mkdir()
    assert wait_for(lambda: (fs.pools[0] / "superblock").exists(), timeout=30)
    assert (fs.pools[0] / "superblock").read_bytes() == superblock
    for log in fs.logs:
        assert new.read_text() not in log.read_text() and fs.key.read_text() not in log.read_text()
    fs.unmount()
    res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(fs.key), "--foreground")
    assert res.returncode == 3 and res.stderr.count("\n") == 1
    fs.mount(key=new)
    assert (fs.mnt / "f").read_bytes() == b"data"


def test_json_for_scrub_fsck_and_recover(repfs: Repfs) -> None:
    (repfs.mnt / "f").write_bytes(os.urandom(200_000))
    repfs.unmount()
    key = ["--key-file", str(repfs.key)]
    for cmd, keys in (("scrub", {"blocks", "copies", "summary"}), ("fsck", {"problems", "found", "left"})):
        res = run_repfs(cmd, str(repfs.fs_dir), *key, "--json")
        assert res.returncode == 0, res.stderr
        assert keys <= set(json.loads(res.stdout)), res.stdout
    res = run_repfs("recover", str(repfs.fs_dir), *key, "--json")
    assert res.returncode == 5 and json.loads(res.stdout)["error"] == "FilesystemExists"
    res = run_repfs("scrub", str(repfs.fs_dir), "--key-file", str(repfs.base / "missing"), "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["exit"] == 2


def test_progress_outside_a_terminal_has_done_total_rate_and_eta() -> None:
    import io

    from repfs.progress import Progress

    now = [0.0]
    out = io.StringIO()
    with Progress("scrub", "blocks", stream=out, every=10, clock=lambda: now[0], tty=False) as bar:
        for done in range(0, 4001, 100):
            now[0] = done / 50
            bar.update(done, 4000)
    assert out.getvalue().splitlines() == [
        "scrub: 500/4,000 blocks (12%), 50.0 blocks/s, ETA 1m10s",
        "scrub: 1,000/4,000 blocks (25%), 50.0 blocks/s, ETA 1m00s",
        "scrub: 1,500/4,000 blocks (38%), 50.0 blocks/s, ETA 50s",
        "scrub: 2,000/4,000 blocks (50%), 50.0 blocks/s, ETA 40s",
        "scrub: 2,500/4,000 blocks (62%), 50.0 blocks/s, ETA 30s",
        "scrub: 3,000/4,000 blocks (75%), 50.0 blocks/s, ETA 20s",
        "scrub: 3,500/4,000 blocks (88%), 50.0 blocks/s, ETA 10s",
        "scrub: 4,000/4,000 blocks (100%), 50.0 blocks/s",
    ]


def test_text_for_people_in_pools_show_and_scrub_status(repfs_factory: Factory, sockdir: Path) -> None:
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock))
    (fs.mnt / "f").write_bytes(b"x" * 1000)
    assert admin("--socket", str(sock), "scrub").returncode == 0
    for args in (["pools", "show", "pool1"], ["scrub", "--status"]):
        res = admin("--socket", str(sock), *args)
        assert res.returncode == 0, res.stderr
        values = " ".join(line.split(None, 1)[1] for line in res.stdout.splitlines()[1:] if " " in line.strip())
        assert "False" not in values and "True" not in values, res.stdout
        for word in values.split():
            assert not (word.replace(".", "").isdigit() and float(word) > 1e9), f"{args}: a raw number {word}"
    shown = admin("--socket", str(sock), "pools", "show", "pool1").stdout
    assert "used" in shown and ("K" in shown or "B" in shown) and "%" in shown
