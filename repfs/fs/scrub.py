"""Scrub: read every copy of every block, check it by digest, repair what is bad or missing.

Blocks are visited in block id order; the id of the last finished batch is kept in the
metadata (`META_SCRUB_CURSOR`), so an interrupted scrub resumes where it stopped unless
asked to start over. Reads are paced by a rate limit, writes by the repairer's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from repfs.fs.ratelimit import RateLimit
from repfs.fs.repair import Repairer
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

BATCH = 128


@dataclass
class ScrubReport:
    blocks: int = 0  # blocks checked in this run
    copies: int = 0  # copies read and verified
    repaired: int = 0  # copies written back
    removed: int = 0  # extra or damaged copies deleted
    incomplete: int = 0  # blocks left short because a pool does not serve now
    unrecoverable: int = 0  # blocks with no good copy anywhere
    resumed: bool = False  # whether this run went on from an earlier one

    def summary(self) -> str:
        return (
            f"{self.blocks} blocks checked ({self.copies} copies), {self.repaired} copies repaired, "
            f"{self.removed} extra copies removed, {self.incomplete} incomplete, {self.unrecoverable} unrecoverable"
        )


async def scrub(
    meta: MetaStore,
    repairer: Repairer,
    *,
    restart: bool = False,
    reads: RateLimit | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScrubReport:
    """Scrub every block (from the saved position unless `restart`); `progress(done, total)`."""
    report = ScrubReport()
    with meta.read() as t:
        saved = t.get("meta", s.META_SCRUB_CURSOR)
        total = sum(1 for _ in t.scan("blocks", b""))
    cursor = None if restart else saved
    done = 0
    if cursor is not None:
        report.resumed = True
        with meta.read() as t:
            done = sum(1 for k, _ in t.scan("blocks", b"") if k <= cursor)
        log.info("scrub resumes after %d of %d blocks", done, total)
    if progress:
        progress(done, total)
    while True:
        with meta.read() as t:
            batch = []
            for k, _ in t.scan("blocks", b"", start=cursor):
                if k == cursor:
                    continue
                batch.append(k)
                if len(batch) == BATCH:
                    break
        if not batch:
            break
        for block_id in batch:
            out = await repairer.repair_block(block_id, deep=True, reads=reads)
            report.blocks += 1
            report.copies += out.copies_checked
            report.repaired += out.repaired
            report.removed += out.removed
            report.unrecoverable += out.unrecoverable
            report.incomplete += not out.complete and not out.unrecoverable
            done += 1
            if progress:
                progress(done, max(total, done))
        cursor = batch[-1]
        with meta.write() as t:
            t.put("meta", s.META_SCRUB_CURSOR, cursor)
    with meta.write() as t:
        t.delete("meta", s.META_SCRUB_CURSOR)
    meta.sync()
    log.info("scrub finished: %s", report.summary())
    return report
