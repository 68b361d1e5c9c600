"""Pool health on local pools: a pool that goes away is `down`, comes back through `verifying`,
and its missed copies are repaired; a pool that comes back with damaged objects is `failed`.

A local pool "goes down" the way a disk is unmounted: its directory disappears.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.backend.keys import block_id_from_key
from repfs.backend.placement import rank_pools
from tests.helpers import Repfs, wait_for

pytestmark = pytest.mark.timeout(120)

BS = 64 * 1024


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repfs.admin.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def targets(fs: Repfs, key: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """The pools that should hold `key`: the first `replicas` of its placement order."""
    order = rank_pools(block_id_from_key(key), [(p.name, 1.0) for p in fs.pools])
    return set([n for n in order if n not in exclude][: fs.replicas])


def misplaced(fs: Repfs, exclude: tuple[str, ...] = ()) -> list[str]:
    """Block keys not held by exactly their target pools."""
    where: dict[str, set[str]] = {}
    for pool in fs.pools:
        for key in fs.pool_keys(pool):
            where.setdefault(key, set()).add(pool.name)
    return [k for k, held in where.items() if held - set(exclude) != targets(fs, k, exclude)]


def logged(fs: Repfs, pattern: str) -> bool:
    return re.search(pattern, fs.log_text()) is not None


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def take_away(fs: Repfs, pool: Path) -> Path:
    away = pool.with_name(pool.name + "-away")
    pool.rename(away)
    fs.expect_log(rf"pool {pool.name}|{pool.name} \(")
    assert wait_for(lambda: logged(fs, rf"pool {pool.name} is now down"), 30), fs.log_tail()
    return away


@pytest.mark.standalone
def test_a_pool_that_goes_down_is_verified_when_it_returns_and_its_copies_repaired(repfs: Repfs) -> None:
    repfs.remount("--heartbeat", "0.3")
    before = {f"old{i}": random.Random(i).randbytes(2 * BS + i) for i in range(4)}
    for name, data in before.items():
        write_synced(repfs.mnt / name, data)
    victim = repfs.pools[0]
    away = take_away(repfs, victim)
    during = {f"new{i}": random.Random(100 + i).randbytes(3 * BS + i) for i in range(8)}
    for name, data in during.items():  # every write and fsync succeeds with the pool gone
        write_synced(repfs.mnt / name, data)
    for name, data in {**before, **during}.items():
        assert (repfs.mnt / name).read_bytes() == data, name
    stand_ins = misplaced(repfs)
    assert stand_ins, "some new block should have had the missing pool among its targets"
    away.rename(victim)
    assert wait_for(lambda: logged(repfs, rf"pool {victim.name} is now up: challenge passed"), 30), repfs.log_tail()
    text = repfs.log_text()
    assert text.index(f"pool {victim.name} is now verifying") < text.index(f"pool {victim.name} is now up")
    assert wait_for(lambda: not misplaced(repfs), 30), f"still misplaced: {misplaced(repfs)[:5]}"
    repfs.remount()
    for name, data in {**before, **during}.items():
        assert (repfs.mnt / name).read_bytes() == data, name


@pytest.mark.standalone
def test_a_pool_that_returns_with_a_damaged_object_is_failed_and_left_alone(repfs: Repfs) -> None:
    repfs.remount("--heartbeat", "0.3", "--challenge-size", "all")
    files = {f"f{i}": random.Random(i).randbytes(2 * BS + 7) for i in range(6)}
    for name, data in files.items():
        write_synced(repfs.mnt / name, data)
    victim = repfs.pools[1]
    held = sorted(repfs.pool_keys(victim))
    assert held
    away = take_away(repfs, victim)
    damaged = away / held[0]
    damaged.write_bytes(b"not the object that was written")
    away.rename(victim)
    repfs.expect_log(rf"pool {victim.name} failed its challenge")
    assert wait_for(lambda: logged(repfs, rf"pool {victim.name} is now failed: challenge failed"), 30), repfs.log_tail()
    assert logged(repfs, rf"block {block_id_from_key(held[0]).hex()[:12]} is corrupt")
    assert not logged(repfs, rf"pool {victim.name} is now up")
    for name, data in files.items():  # everything reads from the other pools
        assert (repfs.mnt / name).read_bytes() == data, name
    write_synced(repfs.mnt / "after", b"x" * (BS + 1))
    # the failed pool takes no new copies, and the blocks it held get a copy elsewhere
    assert wait_for(lambda: not misplaced(repfs, exclude=(victim.name,)), 30), misplaced(repfs, (victim.name,))[:5]
    assert (victim / held[0]).read_bytes() == b"not the object that was written"  # left alone


def test_an_administrator_takes_a_pool_offline_and_puts_it_back(repfs_factory: Callable[..., Repfs]) -> None:
    """Seed 001: take the server offline, fix it by hand, put it back online: it is verified
    again; meanwhile it gets no traffic and raises no alarm, and what it missed is repaired."""
    fs = repfs_factory()
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--heartbeat", "0.3", "--admin-socket", str(sock))
    before = {f"a{i}": random.Random(i).randbytes(3 * BS + i) for i in range(6)}
    for name, data in before.items():
        write_synced(fs.mnt / name, data)
    victim = fs.pools[1]
    res = admin("--socket", str(sock), "pools", "offline", victim.name)
    assert res.returncode == 0 and "offline" in res.stdout, res.stderr
    keys = fs.pool_keys(victim)
    during = {f"b{i}": random.Random(100 + i).randbytes(3 * BS + i) for i in range(6)}
    for name, data in during.items():
        write_synced(fs.mnt / name, data)
    assert fs.pool_keys(victim) == keys  # no traffic: nothing new written to it
    assert "offline = true" in (fs.fs_dir / "repfs.toml").read_text()
    fs.remount()  # it stays out across a restart, and the terminal is told
    assert any(f"pool {victim.name} is offline" in note for note in fs.mount_notes), fs.mount_notes
    write_synced(fs.mnt / "b-after-restart", b"r" * (2 * BS))
    during["b-after-restart"] = b"r" * (2 * BS)
    assert fs.pool_keys(victim) == keys
    status = json.loads(admin("--socket", str(sock), "status", "--json").stdout)
    assert {p["name"]: p["state"] for p in status["pools"]}[victim.name] == "offline"
    assert not any(victim.name in alert for alert in status["alerts"]), status["alerts"]
    for name, data in {**before, **during}.items():
        assert (fs.mnt / name).read_bytes() == data
    assert admin("--socket", str(sock), "pools", "online", fs.pools[0].name).returncode == 5  # not offline
    res = admin("--socket", str(sock), "pools", "online", victim.name)
    assert res.returncode == 0, res.stderr
    assert "offline" not in (fs.fs_dir / "repfs.toml").read_text()
    assert wait_for(lambda: logged(fs, rf"pool {victim.name} is now up: challenge passed"), 30), fs.log_tail()
    assert wait_for(lambda: not misplaced(fs), 60), misplaced(fs)  # what it missed was copied back
    fs.remount()
    for name, data in {**before, **during}.items():
        assert (fs.mnt / name).read_bytes() == data


@pytest.mark.standalone
def test_check_path_finds_a_deleted_and_a_damaged_copy_and_queues_them(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--admin-socket", str(sock), "--heartbeat", "0.5")
    (fs.mnt / "dir").mkdir()
    data = random.Random(5).randbytes(4 * BS)
    write_synced(fs.mnt / "dir" / "f", data)
    res = admin("--socket", str(sock), "check", str(fs.mnt / "dir"), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    answer = json.loads(res.stdout)
    [report] = answer["files"]
    assert report["path"] == "/dir/f" and len(report["blocks"]) == 4
    assert all(len(b["copies"]) == 2 and set(b["copies"].values()) == {"ok"} for b in report["blocks"])
    # delete one copy and damage another, behind repfs's back
    first, second = report["blocks"][0], report["blocks"][1]
    gone_pool, bad_pool = next(iter(first["copies"])), next(iter(second["copies"]))
    keys = {p.name: fs.pool_keys(p) for p in fs.pools}
    gone = next(k for k in keys[gone_pool] if first["block"] in k)
    bad = next(k for k in keys[bad_pool] if second["block"] in k)
    (fs.base / gone_pool / gone).unlink()
    (fs.base / bad_pool / bad).write_bytes(b"garbage")
    fs.expect_log(r"repaired block|damaged|corrupt|digest")
    soft = admin("--socket", str(sock), "check", "dir/f")
    assert soft.returncode == 1 and f"{gone_pool}:missing" in soft.stdout, soft.stdout
    deep = admin("--socket", str(sock), "check", "dir/f", "--deep", "--json")
    assert deep.returncode == 1
    states = {b["block"]: b["copies"] for b in json.loads(deep.stdout)["files"][0]["blocks"]}
    assert states[second["block"]][bad_pool].startswith("damaged")
    assert wait_for(lambda: admin("--socket", str(sock), "check", "dir/f", "--deep").returncode == 0, 30)
    fs.remount()
    assert (fs.mnt / "dir" / "f").read_bytes() == data
    assert admin("--socket", str(sock), "check", "nope").returncode != 0


def test_replicas_change_at_runtime_and_copies_follow(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--admin-socket", str(sock))
    files = {f"r{i}": random.Random(50 + i).randbytes(2 * BS + i) for i in range(6)}
    for name, data in files.items():
        write_synced(fs.mnt / name, data)
    assert not misplaced(fs)
    res = admin("--socket", str(sock), "config", "set", "replicas", "3")
    assert res.returncode == 0 and "replicas 3" in res.stdout, res.stderr
    assert "replicas = 3" in (fs.fs_dir / "repfs.toml").read_text()
    fs.replicas = 3
    assert wait_for(lambda: not misplaced(fs), 60), misplaced(fs)  # every block on all three pools
    assert admin("--socket", str(sock), "config", "set", "write-quorum", "4").returncode == 2
    res = admin("--socket", str(sock), "config", "set", "replicas", "2", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["queued"] > 0, res.stdout
    fs.replicas = 2
    assert wait_for(lambda: not misplaced(fs), 60), misplaced(fs)  # the extra copies are gone again
    fs.remount()
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data


def deficit(sock: Path) -> int:
    res = admin("--socket", str(sock), "repair", "status", "--json")
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)["deficit"])


def caught_up(fs: Repfs, sock: Path, files: dict[str, bytes]) -> None:
    """Every block is on its targets, nothing is left to repair, a deep scrub finds nothing
    missing or damaged, and every file reads back after a remount."""
    assert wait_for(lambda: not misplaced(fs) and deficit(sock) == 0, 60), (misplaced(fs)[:5], deficit(sock))
    res = admin("--socket", str(sock), "scrub", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)["report"]
    assert report["repaired"] == 0 and report["incomplete"] == 0 and report["blocks"] > 0, report
    fs.remount()
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data, name


def catch_up_rig(fs: Repfs) -> tuple[Path, dict[str, bytes]]:
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    fs.mount("--heartbeat", "0.3", "--admin-socket", str(sock), "--challenge-size", "all")
    files = {f"old{i}": random.Random(i).randbytes(3 * BS + i) for i in range(6)}
    for name, data in files.items():
        write_synced(fs.mnt / name, data)
    return sock, files


def write_more(fs: Repfs, files: dict[str, bytes], prefix: str) -> None:
    for i in range(6):
        data = random.Random(hash(prefix) + i).randbytes(2 * BS + i)
        write_synced(fs.mnt / f"{prefix}{i}", data)
        files[f"{prefix}{i}"] = data


def empty(pool: Path) -> None:
    """Wipe a pool behind the daemon's back. The daemon may write into it meanwhile (its
    journal), so a folder can fill again while rmtree empties it: moved aside first, then
    removed."""
    for child in list(pool.iterdir()):
        if child.is_dir():
            aside = pool.parent / f".wiped-{pool.name}-{child.name}"
            child.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def test_a_pool_wiped_while_mounted_is_caught_up(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    sock, files = catch_up_rig(fs)
    victim = fs.pools[2]
    fs.expect_log(rf"pool {victim.name} has no superblock")
    empty(victim)
    write_more(fs, files, "during")
    queued = rf"pool {victim.name}: \d+ blocks it should hold are checked"
    assert wait_for(lambda: logged(fs, queued), 30), fs.log_tail()
    caught_up(fs, sock, files)


def test_a_pool_that_comes_back_empty_is_caught_up(repfs_factory: Callable[..., Repfs]) -> None:
    """A server restarted without its data: the pool goes down, then answers with nothing."""
    fs = repfs_factory()
    sock, files = catch_up_rig(fs)
    victim = fs.pools[0]
    away = take_away(fs, victim)
    write_more(fs, files, "away")
    fs.expect_log(rf"pool {victim.name} has no superblock")
    victim.mkdir()
    assert wait_for(lambda: logged(fs, rf"pool {victim.name} is now up: it came back empty"), 30), fs.log_tail()
    shutil.rmtree(away)
    write_more(fs, files, "after")
    caught_up(fs, sock, files)


@pytest.mark.standalone
def test_a_failed_pool_is_left_alone_until_cleared_then_caught_up(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    sock, files = catch_up_rig(fs)
    victim = fs.pools[1]
    held = sorted(fs.pool_keys(victim))
    away = take_away(fs, victim)
    (away / held[0]).write_bytes(b"damaged behind repfs's back")
    write_more(fs, files, "away")
    fs.expect_log(rf"pool {victim.name} failed its challenge")
    away.rename(victim)
    assert wait_for(lambda: logged(fs, rf"pool {victim.name} is now failed"), 30), fs.log_tail()
    write_more(fs, files, "failed")
    keys = fs.pool_keys(victim)
    assert fs.pool_keys(victim) == keys  # nothing written to it
    (victim / "superblock").unlink()  # and its superblock lost too: still left alone
    write_more(fs, files, "nosb")
    assert not (victim / "superblock").exists() and fs.pool_keys(victim) == keys
    res = admin("--socket", str(sock), "pools", "clear", victim.name, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["state"] == "up"
    assert (victim / "superblock").exists()
    assert admin("--socket", str(sock), "pools", "clear", victim.name).returncode == 5  # not failed now
    caught_up(fs, sock, files)
    assert (victim / held[0]).read_bytes() != b"damaged behind repfs's back"


@pytest.mark.standalone
def test_mount_and_umount_say_what_a_missing_pool_means(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    fs.mount("--heartbeat", "0.3")
    victim = fs.pools[2]
    away = take_away(fs, victim)  # it keeps this mount's lease: the release cannot reach it
    files = {f"m{i}": random.Random(i).randbytes(2 * BS + i) for i in range(6)}
    for name, data in files.items():
        write_synced(fs.mnt / name, data)
    fs.unmount()
    short = r"; (\d+) blocks are stored with fewer copies than wanted \(pools not in service: (\S+)\)"
    said = re.search(short, fs.umount_said)
    assert said is not None and int(said[1]) > 0 and said[2] == victim.name, fs.umount_said
    fs.mount()
    assert len(fs.mount_notes) == 1 and f"pool {victim.name} is unreachable and starts out down" in fs.mount_notes[0]
    fs.unmount()
    away.rename(victim)
    fs.mount("--heartbeat", "0.3")  # the stale lease on the returned pool is this host's: taken over
    assert fs.mount_notes == []
    assert wait_for(lambda: not misplaced(fs), 60), misplaced(fs)[:5]
    fs.unmount()
    assert fs.umount_said == f"unmounted {fs.mnt}"
    fs.mount()
    for name, data in files.items():
        assert (fs.mnt / name).read_bytes() == data, name
