"""The pools' history in SQL: a usage sample of every pool each interval and every state
change with its reason, in FS_DIR/history.sqlite, kept across a remount, readable with
sqlite3 while the daemon writes, and answered by the admin socket."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.admin.rig import admin, admin_json
from tests.helpers import Repfs, wait_for

pytestmark = pytest.mark.timeout(180)


def rows(fs: Repfs, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{fs.fs_dir / 'history.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_pool_usage_and_states_are_kept_in_sql(repfs_factory: Callable[..., Repfs], sockdir: Path) -> None:
    fs = repfs_factory()
    sock = sockdir / "s"
    fs.mount("--admin-socket", str(sock), "--history-interval", "0.3", "--usage-interval", "0.3")
    names = [f"pool{i + 1}" for i in range(fs.npools)]
    assert wait_for(lambda: len(rows(fs, "SELECT DISTINCT at FROM pool_usage")) >= 2, 30)
    mounted = rows(fs, "SELECT pool, state, reason FROM pool_states ORDER BY pool")
    assert mounted == [(n, "up", "mounted") for n in names]
    (start,) = rows(fs, "SELECT max(used) FROM pool_usage WHERE pool = 'pool1'")[0]

    (fs.mnt / "data.bin").write_bytes(os.urandom(3 << 20))
    os.sync()
    assert wait_for(lambda: rows(fs, "SELECT max(used) FROM pool_usage")[0][0] > (start or 0) + (1 << 20), 30)

    res = admin(sock, "pools", "offline", "pool3")
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_for(lambda: ("pool3", "offline") in rows(fs, "SELECT pool, state FROM pool_states"), 30)
    assert wait_for(lambda: ("pool3", "offline") in rows(fs, "SELECT pool, state FROM pool_usage"), 30)
    changed = admin_json(sock, "pools", "list")  # the live state agrees
    assert {p["name"]: p["state"] for p in changed["pools"]}["pool3"] == "offline"
    answered = admin_json(sock, "history", "pools", "--pool", "pool3")
    assert [s["state"] for s in answered["states"]] == ["up", "offline"], answered["states"]
    assert answered["states"][1]["reason"] and all(u["pool"] == "pool3" for u in answered["usage"])
    assert answered["usage"] and answered["usage"][-1]["state"] == "offline"
    assert admin(sock, "history", "pools", "--pool", "nosuch").returncode == 4

    fs.unmount()
    kept = len(rows(fs, "SELECT * FROM pool_usage"))  # after the unmount: it writes samples until it ends
    fs.mount("--admin-socket", str(sock), "--history-interval", "0.3")
    assert wait_for(lambda: len(rows(fs, "SELECT * FROM pool_usage")) > kept + fs.npools, 30)  # kept, and more
    states = rows(fs, "SELECT pool, state, reason FROM pool_states WHERE pool = 'pool3' ORDER BY at")
    assert [s[1] for s in states] == ["up", "offline", "offline"] and states[-1][2] == "mounted"
    assert rows(fs, "SELECT value FROM history_meta WHERE key = 'version'") == [("1",)]
    assert time.time() - float(rows(fs, "SELECT max(at) FROM pool_usage")[0][0]) < 30
