"""The pools' history in SQL (seed 001: server status in an SQL database, so that pages never
ask the pools): a usage sample of every pool once a `interval` (a minute), and every state
change with its reason, in FS_DIR/history.sqlite. Kept `keep_days` (90) days, across
restarts; anyone with `sqlite3` can query it:

    sqlite3 FS_DIR/history.sqlite "SELECT datetime(at, 'unixepoch'), pool, state, reason FROM pool_states"

| table | columns |
|---|---|
| pool_usage | at (unix s), pool, state, used, total, free (bytes; NULL while not measured) |
| pool_states | at, pool, state, reason (`mounted` for the state at each mount) |

The file is this host's record, not filesystem metadata: it is not journaled, and a
lost one starts again empty. SQLite runs in a worker thread, one call at a time; state
changes wait in a bounded queue (the oldest are dropped past it, and that is logged).
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from repfs.backend.poolset import PoolSet
from repfs.backend.state import PoolState

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
KEEP_DAYS = 90
QUEUED = 10_000  # state changes waiting to be written
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pool_usage (at REAL NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL,
                                       used INTEGER, total INTEGER, free INTEGER);
CREATE INDEX IF NOT EXISTS pool_usage_by_pool ON pool_usage (pool, at);
CREATE INDEX IF NOT EXISTS pool_usage_by_time ON pool_usage (at);
CREATE TABLE IF NOT EXISTS pool_states (at REAL NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL,
                                        reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pool_states_by_pool ON pool_states (pool, at);
"""


@dataclass(frozen=True)
class StateChange:
    at: float
    pool: str
    state: str
    reason: str


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # readers (sqlite3, the web) never wait for the writer
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    row = db.execute("SELECT value FROM history_meta WHERE key = 'version'").fetchone()
    if row is None:
        db.execute("INSERT INTO history_meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        db.close()
        raise ValueError(f"{path} is history schema {row[0]}, newer than this repfs knows ({SCHEMA_VERSION})")
    path.chmod(0o640)
    return db


class PoolHistory:
    def __init__(self, path: Path, pools: PoolSet, *, interval: float = DEFAULT_INTERVAL,
                 keep_days: float = KEEP_DAYS) -> None:  # fmt: skip
        self.path = path
        self.pools = pools
        self.interval = interval
        self.keep = keep_days * 86400
        self.samples = 0
        self._queue: collections.deque[StateChange] = collections.deque(maxlen=QUEUED)
        self._dropped = 0
        self._db: sqlite3.Connection | None = None
        self._sql = trio.CapacityLimiter(1)
        pools.state_observers.append(self.state_changed)

    def state_changed(self, pool: str, state: PoolState, why: str) -> None:
        if len(self._queue) == QUEUED:
            self._dropped += 1
        self._queue.append(StateChange(time.time(), pool, state.value, why))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: the state at mount, then a sample of every pool each interval."""
        try:
            self._db = await trio.to_thread.run_sync(open_db, self.path, limiter=self._sql)
        except (sqlite3.Error, OSError, ValueError) as exc:
            log.warning("no pool history (%s): %s", self.path, exc)
            task_status.started()
            return
        now = time.time()
        for name in self.pools.pool_names:
            self._queue.appendleft(StateChange(now, name, self.pools.state(name).value, "mounted"))
        task_status.started()
        last_prune = 0.0
        try:
            while True:
                prune = time.time() - last_prune > 3600
                try:
                    await self._write(prune=prune)
                    last_prune = time.time() if prune else last_prune
                except sqlite3.Error as exc:
                    log.warning("pool history not written now: %s", exc)
                await trio.sleep(self.interval)  # a period, not synchronisation
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._write(prune=False)  # the last state changes before unmount
                except sqlite3.Error as exc:
                    log.warning("pool history: the last changes were not written: %s", exc)
                await trio.to_thread.run_sync(self._close, limiter=self._sql)

    async def _write(self, *, prune: bool) -> None:
        at = time.time()
        rows = []
        for name in self.pools.pool_names:
            space = self.pools.space(name)
            rows.append((at, name, self.pools.state(name).value, space.used, space.total, space.free))
        changes = [(c.at, c.pool, c.state, c.reason) for c in self._queue]
        self._queue.clear()
        if self._dropped:
            log.warning("pool history: %d state changes came faster than they could be kept", self._dropped)
            self._dropped = 0
        await trio.to_thread.run_sync(self._insert, rows, changes, at - self.keep if prune else None,
                                      limiter=self._sql)  # fmt: skip
        self.samples += 1

    def _insert(self, rows: list[tuple[Any, ...]], changes: list[tuple[Any, ...]], before: float | None) -> None:
        db = self._db
        if db is None:
            return
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO pool_states VALUES (?, ?, ?, ?)", changes)
            db.executemany("INSERT INTO pool_usage VALUES (?, ?, ?, ?, ?, ?)", rows)
            if before is not None:
                db.execute("DELETE FROM pool_usage WHERE at < ?", (before,))
                db.execute("DELETE FROM pool_states WHERE at < ?", (before,))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def query(self, pool: str | None, since: float, limit: int) -> dict[str, list[dict[str, Any]]]:
        """Samples and state changes since `since` (of one pool, or all), oldest first."""
        return await trio.to_thread.run_sync(self._query, pool, since, limit, limiter=self._sql)

    def _query(self, pool: str | None, since: float, limit: int) -> dict[str, list[dict[str, Any]]]:
        if self._db is None:
            return {"usage": [], "states": []}
        where, args = ("at >= ? AND pool = ?", (since, pool)) if pool else ("at >= ?", (since,))
        usage = self._db.execute(f"SELECT at, pool, state, used, total, free FROM pool_usage WHERE {where} "
                                 "ORDER BY at LIMIT ?", (*args, limit)).fetchall()  # fmt: skip
        states = self._db.execute(f"SELECT at, pool, state, reason FROM pool_states WHERE {where} "
                                  "ORDER BY at LIMIT ?", (*args, limit)).fetchall()  # fmt: skip
        return {
            "usage": [dict(zip(("at", "pool", "state", "used", "total", "free"), r, strict=True)) for r in usage],
            "states": [dict(zip(("at", "pool", "state", "reason"), r, strict=True)) for r in states],
        }
