"""Retention and eviction on a real mount, by ingest time: when repfs took a file in, which
touch, rsync -a and cp -p do not change. The sweeper deletes only files past their
folder's maximum age and not on hold, says so in the audit log, and goes on after a
kill -9 where it stopped; eviction removes the oldest files of a namespace past its size,
never a held one or one under its minimum age."""

from __future__ import annotations

import json
import os
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest

from repfs.admin import cli as admin_cli  # noqa: F401 - imported before children drop root
from tests.helpers import REPFS, Repfs, public_dir, public_filesystem, run_as, wait_for
from tests.mount.accounts_rig import add, admin, ids

pytestmark = pytest.mark.timeout(240)

AGE = 3  # seconds: the maximum age of the short-lived folder


def info(sock: Path, path: Path) -> dict[str, object]:
    res = admin(sock, "info", str(path), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    answer: dict[str, object] = json.loads(res.stdout)
    return answer


def status(sock: Path) -> dict[str, object]:
    res = admin(sock, "retention", "status", "--json")
    assert res.returncode == 0, res.stderr
    answer: dict[str, object] = json.loads(res.stdout)
    return answer


def contains(fs: Repfs, text: str) -> bool:
    return text in fs.log_text()


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_the_sweeper_deletes_by_ingest_time_only_what_is_past_its_age_and_not_held(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice = names[0]
    add(sock, alice)
    home = fs.mnt / alice
    box, archive, plain = home / "box", home / "archive", home / "plain"

    def make() -> None:
        for folder in (box, archive, plain):
            folder.mkdir()
        for name in ("a", "b", "held"):
            (box / name).write_bytes(name.encode())
        (plain / "c").write_bytes(b"no rule here")

    run_as(*ids(alice), make)
    # the rules come first: the first sweep runs at once and finds nothing yet
    ok(admin(sock, "retention", "set", str(box), "--max-age", f"{AGE}s"))
    ok(admin(sock, "retention", "set", str(archive), "--max-age", "30d", "--min-age", "1d"))
    assert wait_for(lambda: status(sock)["last_finished"], 15)
    ok(admin(sock, "hold", "add", str(box / "held"), "--reason", "case 7"))

    made, made_b = info(sock, box / "a"), info(sock, box / "b")
    subprocess.run(["touch", str(box / "a")], check=True)  # a new mtime does not exempt it
    os.utime(box / "b", (978307200, 978307200))  # 2001: nor does an old one make it older
    after = info(sock, box / "a")
    assert after["ingested"] == made["ingested"] and after["mtime"] != made["mtime"]
    b = info(sock, box / "b")
    assert b["mtime"] == 978307200 and b["ingested"] == made_b["ingested"]

    with public_dir() as src:  # files of 2001, copied in with their mtimes
        for name in ("old1", "old2"):
            (src / name).write_bytes(b"from 2001")
            os.utime(src / name, (978307200, 978307200))
        ingested = float(str(made["ingested"]))
        assert wait_for(lambda: time.time() > ingested + AGE + 0.5, AGE + 5)
        for target in (archive, box / "copied"):
            ok(subprocess.run(["rsync", "-a", f"{src}/", f"{target}/"], capture_output=True, text=True, timeout=60))
    assert (box / "copied" / "old1").stat().st_mtime == 978307200

    dry = json.loads(ok(admin(sock, "retention", "status", "--dry-run", "--json")).stdout)["dry_run"]
    assert sorted(dry["paths"]) == [f"/{alice}/box/a", f"/{alice}/box/b"] and dry["held"] == 1
    assert (box / "a").exists()  # a dry run deletes nothing

    ok(admin(sock, "retention", "run"))
    assert wait_for(lambda: not (box / "a").exists() and not (box / "b").exists(), 20)
    assert wait_for(lambda: status(sock)["last_removed"] == 2, 10)
    st = status(sock)
    assert st["last_skipped"] == 1 and not st["running"]
    assert (box / "held").read_bytes() == b"held"  # on hold: kept past its age
    assert sorted(p.name for p in (box / "copied").iterdir()) == ["old1", "old2"]  # copied in today
    assert sorted(p.name for p in archive.iterdir()) == ["old1", "old2"]  # 2001 mtimes, 30 days to go
    assert (plain / "c").exists()
    shown = info(sock, archive / "old1")
    assert shown["max_age"] == 30 * 86400 and shown["min_age"] == 86400
    assert float(str(shown["expires"])) > time.time() + 29 * 86400
    assert info(sock, box / "held")["held"] == "case 7"
    log = fs.log_text()
    for name in ("a", "b"):
        record = f'"op": "expire", "path": "/{alice}/box/{name}"'
        assert wait_for(partial(contains, fs, record), 10), log[-3000:]
    assert '"op": "retention.set"' in log
    rules = {r["path"]: r["max_age"] for r in status(sock)["rules"]}  # type: ignore[attr-defined]
    assert rules == {f"/{alice}/box": AGE, f"/{alice}/archive": 30 * 86400}
    res = admin(sock, "retention", "set", str(box / "held"), "--max-age", "1d")
    assert res.returncode == 2 and "not a folder" in res.stderr
    res = admin(sock, "retention", "set", str(box), "--max-age", "soon")
    assert res.returncode == 2 and "is not an age" in res.stderr


def test_a_sweep_cut_by_kill_9_goes_on_at_the_next_mount(request: pytest.FixtureRequest) -> None:
    with public_filesystem(request.node, "--expire-rate", "20") as fs:
        box, other = fs.mnt / "box", fs.mnt / "other"
        box.mkdir()
        other.mkdir()
        sock = fs.fs_dir / "admin.sock"
        ok(admin(sock, "retention", "set", str(box), "--max-age", "2s"))
        assert wait_for(lambda: status(sock)["last_finished"], 15)  # the first sweep: nothing yet
        for i in range(80):
            (box / f"f{i:03}").write_bytes(b"x")
        (other / "kept").write_bytes(b"no rule")
        written = time.time()
        assert wait_for(lambda: time.time() > written + 2.5, 5)  # the files get older than the rule allows
        ok(admin(sock, "retention", "run"))
        assert wait_for(lambda: len(os.listdir(box)) <= 50, 30)  # 20 a second: cut it half way
        fs.kill9()
        fs.mount("-o", "allow_other", "--expire-rate", "20")
        assert wait_for(lambda: not os.listdir(box), 30), os.listdir(box)
        assert (other / "kept").exists()
        assert wait_for(lambda: "retention sweep resumed" in fs.logs[-1].read_text(), 10)
        assert wait_for(lambda: not status(sock)["running"] and status(sock)["last_finished"], 10)
        fs.unmount()
        fsck = subprocess.run(
            [*REPFS, "fsck", str(fs.fs_dir), "--key-file", str(fs.key)], capture_output=True, text=True, timeout=120
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        fs.mount("-o", "allow_other")


def test_eviction_removes_the_oldest_files_never_held_or_retained(
    mounted: tuple[Repfs, Path], names: list[str]
) -> None:
    fs, sock = mounted
    alice = names[0]
    add(sock, alice)
    home = fs.mnt / alice
    (home / "keep").mkdir()
    ok(admin(sock, "retention", "set", str(home / "keep"), "--min-age", "1h"))
    ok(admin(sock, "users", "set", alice, "--max-size", "1M", "--evict", "oldest"))
    size = 256 << 10
    order = ["old1", "old2", "keep/young", "f3", "f4", "f5"]
    for i, name in enumerate(order):
        (home / name).write_bytes(bytes([i]) * size)
        if name == "old1":
            ok(admin(sock, "hold", "add", str(home / "old1")))
    gone = {"old2", "f3"}  # the oldest files neither held nor under their minimum age
    assert wait_for(lambda: not any((home / n).exists() for n in gone), 20), os.listdir(home)
    for name in set(order) - gone:
        assert (home / name).stat().st_size == size, name
    shown = json.loads(ok(admin(sock, "users", "show", alice, "--json")).stdout)
    assert shown["usage"]["bytes"] == 4 * size and shown["quota"]["evict_bytes"] == 1 << 20
    for name in sorted(gone):
        assert wait_for(partial(contains, fs, f'"op": "evict", "path": "/{alice}/{name}"'), 10)
    res = admin(sock, "users", "set", alice, "--max-size", "1M")
    assert res.returncode == 0  # already evicting: the size alone may change
    res = admin(sock, "users", "set", alice, "--evict", "none", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["quota"]["evict_bytes"] == 0
    res = admin(sock, "users", "set", alice, "--max-size", "2M")
    assert res.returncode == 2 and "evict" in res.stderr
