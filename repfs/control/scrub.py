"""Scrub of the mounted filesystem, run inside the daemon (`repfs-admin scrub`).

The same `repfs.fs.scrub.scrub` as `repfs scrub` (resume from its saved position unless
restarted, reads paced by a rate limit, repairs through the repairer), started in the
background; `progress()` is what the admin API and metrics show. One at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from repfs.errors import RepfsError, RequestRefused
from repfs.fs.ratelimit import RateLimit
from repfs.fs.repair import Repairer
from repfs.fs.scrub import ScrubReport, scrub
from repfs.meta import schema
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)


def record_finished(meta: MetaStore, when: float | None = None) -> None:
    """Remember that a scrub went through every block (metric
    repfs_scrub_last_finished_timestamp_seconds; journaled, so a new host knows it too)."""
    with meta.write() as t:
        t.put("meta", schema.META_SCRUB_FINISHED, schema.u64(int((time.time() if when is None else when) * 1e9)))


@dataclass(frozen=True)
class ScrubResult:
    blocks: int
    copies: int
    repaired: int
    removed: int
    incomplete: int
    unrecoverable: int
    resumed: bool
    summary: str


@dataclass(frozen=True)
class ScrubProgress:
    running: bool
    runs: int  # scrubs started since the mount
    done: int
    total: int
    started: float | None
    finished: float | None
    blocks_per_second: float
    eta_seconds: float | None
    rate_limit: float | None
    error: str | None
    report: ScrubResult | None  # the last finished scrub's


class OnlineScrub:
    def __init__(self, meta: MetaStore, repairer: Repairer) -> None:
        self.meta = meta
        self.repairer = repairer
        self.running = False
        self.done = 0
        self.total = 0
        self.first = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.rate: float | None = None
        self.report: ScrubReport | None = None
        self.error: str | None = None
        self.runs = 0
        self._scope: trio.CancelScope | None = None

    def start(self, nursery: trio.Nursery, *, restart: bool = False, rate: float | None = None) -> None:
        if self.running:
            raise RequestRefused("a scrub is running already; see its progress, or cancel it")
        self.running = True
        self.done = self.total = self.first = 0
        self.started, self.finished = time.time(), None
        self.rate, self.report, self.error = rate, None, None
        self.runs += 1
        nursery.start_soon(self._run, restart, rate)

    def cancel(self) -> None:
        if self._scope is None:
            raise RequestRefused("no scrub is running")
        self._scope.cancel()

    def _progress(self, done: int, total: int) -> None:
        if self.done == 0 and self.total == 0:
            self.first = done
        self.done, self.total = done, total

    async def _run(self, restart: bool, rate: float | None) -> None:
        scope = trio.CancelScope()
        self._scope = scope
        try:
            with scope:
                log.info("scrub started by an administrator%s", " from the first block" if restart else "")
                self.report = await scrub(
                    self.meta, self.repairer, restart=restart, reads=RateLimit(rate), progress=self._progress
                )
                record_finished(self.meta)
            if scope.cancelled_caught:
                self.error = "cancelled by an administrator (the next scrub resumes where this one stopped)"
                log.info("scrub cancelled after %d of %d blocks", self.done, self.total)
        except RepfsError as exc:
            self.error = str(exc)
            log.warning("scrub stopped: %s", exc)
        finally:
            self._scope = None
            self.running = False
            self.finished = time.time()

    def progress(self) -> ScrubProgress:
        elapsed = ((self.finished or time.time()) - self.started) if self.started else 0.0
        speed = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / speed if speed > 0 and self.running else None
        r = self.report
        return ScrubProgress(
            running=self.running,
            runs=self.runs,
            done=self.done,
            total=self.total,
            started=self.started,
            finished=self.finished,
            blocks_per_second=round(speed, 2),
            eta_seconds=round(left, 1) if left is not None else None,
            rate_limit=self.rate,
            error=self.error,
            report=None
            if r is None
            else ScrubResult(
                r.blocks, r.copies, r.repaired, r.removed, r.incomplete, r.unrecoverable, r.resumed, r.summary()
            ),
        )
