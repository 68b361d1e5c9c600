"""The background removal of files by policy: retention (files past their maximum age)
and eviction (the oldest files of a namespace past its eviction size).

Both go by ingest time (`repfs.fs.ingest`), read in order from the ingest index, and
remove a file by the ordinary unlink path as root, name by name, each name only if it
still names the same file: so usage counts, open files, shares and the journal are kept
as by any unlink. A file on legal hold, or one an account is writing (locked), is left
for the next run. Every removal is audited and the kernel forgets the name at once.

The sweeper runs every `interval` seconds while rules exist, paced at `rate` files per
second. Its place (namespace, ingest time, inode) is kept in `meta` after each batch, so
a sweep cut by a crash or an unmount goes on at the next mount where it stopped.
Eviction starts when a write takes a namespace past its size, and at mount for every
namespace that is past it; it removes the oldest files not held nor under the minimum
age of their retention rules until the namespace is under its size again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import trio

from repfs.errors import FsError
from repfs.fs import holds, ingest, quota, retention, zones
from repfs.fs.access import ROOT
from repfs.fs.core import Filesystem
from repfs.fs.paths import child_path
from repfs.fs.ratelimit import RateLimit
from repfs.meta import schema as s
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3600.0  # seconds between sweeps
DEFAULT_RATE = 100.0  # files per second a sweep or an eviction may remove
BATCH = 256  # index entries read per transaction
SAVE_EVERY = 16  # files looked at between two records of the sweeper's place
DRY_RUN_LISTED = 1000  # paths a dry run lists (it counts all)
RETRY_AFTER = 60  # seconds before a sweep or an eviction that failed is tried again
SWEEP_VERSION = 1


@dataclass
class SweepState:
    """The sweeper's record in `meta`: where a running sweep is, and how the last ended."""

    running: bool = False
    started: float = 0.0
    namespace: int = 0  # the namespace being swept (0: files outside every namespace)
    after: tuple[int, int] = (0, 0)  # (ingest time, ino) of the last file looked at
    removed: int = 0
    skipped: int = 0
    finished: float = 0.0  # when the last sweep ended
    last_removed: int = 0
    last_skipped: int = 0

    def pack(self) -> bytes:
        data = {**self.__dict__, "after": list(self.after), "v": SWEEP_VERSION}
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes | None) -> SweepState:
        if raw is None:
            return cls()
        try:
            data = json.loads(raw)
            if data.pop("v", None) != SWEEP_VERSION:
                raise ValueError("unknown version")
            data["after"] = tuple(data["after"])
            return cls(**data)
        except (ValueError, TypeError, KeyError):
            log.warning("the retention sweeper's record is unreadable: the next sweep starts from the beginning")
            return cls()


@dataclass
class DryRun:
    paths: list[str] = field(default_factory=list)  # the first DRY_RUN_LISTED
    count: int = 0
    held: int = 0  # expired, but on legal hold


class Expirer:
    def __init__(
        self,
        meta: MetaStore,
        fs: Filesystem,
        *,
        interval: float = DEFAULT_INTERVAL,
        rate: float | None = DEFAULT_RATE,
    ) -> None:
        self.meta = meta
        self.fs = fs
        self.interval = interval
        self.rate = RateLimit(rate)
        self.removed = {"retention": 0, "eviction": 0}  # files, since mount (metrics)
        self._over: set[int] = set()  # namespaces past their eviction size
        self._stuck: dict[int, float] = {}  # namespace → when all it had left was protected
        self._run_now = False
        self._wake = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._sweeping = False

    # --- the service ------------------------------------------------------------------
    def state(self) -> SweepState:
        with self.meta.read() as t:
            return SweepState.unpack(t.get("meta", s.META_SWEEP))

    def next_run(self) -> float | None:
        """When the next sweep starts (unix time; None: no rules, no sweeps)."""
        with self.meta.read() as t:
            if not retention.any_rules(t):
                return None
        st = self.state()
        if st.running or self._run_now or not st.finished:
            return time.time()
        return st.finished + self.interval

    def run_now(self) -> None:
        self._run_now = True
        self._poke()

    def rules_changed(self) -> None:
        """A rule was set or cleared: when the next sweep is due may have changed."""
        self._poke()

    def over_size(self, namespace: int) -> None:
        """A namespace went past its eviction size (called by the core, any thread). One
        whose files were all protected at the last try is tried again after RETRY_AFTER."""
        if namespace not in self._over and namespace not in self._stuck:
            self._over.add(namespace)
            self._poke()

    def _poke(self) -> None:
        if self._token is not None:
            self._token.run_sync_soon(self._wake.set)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.fs.on_over_size = self.over_size
        with self.meta.read() as t:
            for name, raw in t.scan("quotas", b""):
                home = t.lookup(s.ROOT_INO, name)
                if home is not None and quota.Limits.unpack(raw).evict_bytes:
                    self._over.add(home)  # checked once at mount
        task_status.started()
        try:
            while True:
                self._wake = trio.Event()
                failed = False
                for home, since in list(self._stuck.items()):
                    if time.monotonic() - since >= RETRY_AFTER:
                        del self._stuck[home]
                        self._over.add(home)
                while self._over:
                    failed |= not await self._guarded(self.evict(self._over.pop()))
                due = self.next_run()
                if due is not None and due <= time.time() and not failed:
                    self._run_now = False
                    if await self._guarded(self.sweep()):
                        continue
                    failed = True
                wait = RETRY_AFTER if failed else (due - time.time() if due is not None else self.interval)
                if self._stuck:
                    wait = min(wait, RETRY_AFTER - (time.monotonic() - min(self._stuck.values())))
                with trio.move_on_after(max(0.0, wait)):
                    await self._wake.wait()
        finally:
            self.fs.on_over_size = None

    @staticmethod
    async def _guarded(job: Awaitable[object]) -> bool:
        """Run a sweep or an eviction; a failure is logged and tried again later."""
        try:
            await job
        except (FsError, OSError, ValueError) as exc:
            log.error("removal by policy stopped, tried again in %d s: %s", RETRY_AFTER, exc)
            return False
        return True

    # --- removing ---------------------------------------------------------------------
    async def _remove(self, ino: int, names: list[tuple[int, bytes]], op: str, why: str) -> bool:
        """Remove these names of inode `ino`, if they still name it; whether all went.
        A file open for writing is left alone (root's own writes included)."""
        for parent, name in names:
            await self.rate.take(1)
            if self.fs.locks.holder(ino) is not None:  # checked after the wait: nothing awaits before the unlink
                return False
            with self.meta.read() as t:
                where = child_path(t, parent, name)
            try:
                self.fs.unlink(ROOT, parent, name, expect=ino)
            except FsError as exc:  # held, locked, or gone meanwhile: left as it is
                log.info("%s: %s left (%s)", op, where, exc)
                return False
            self.fs.kernel.forget_entry(parent, name)
            if self.fs.audit is not None:
                self.fs.audit.write(0, op, where, reason=why)
            self.removed["retention" if op == "expire" else "eviction"] += 1
        return True

    # --- retention --------------------------------------------------------------------
    def _widest_cutoffs(self, t: Txn, now_ns: int) -> dict[int, int]:
        """namespace (0: outside all) → the latest cutoff any rule in it may have: files
        ingested before it are looked at, one by one."""
        rules = retention.every(t)
        everywhere = [r.max_age for ino, r in rules if ino == s.ROOT_INO and r.max_age]
        shortest: dict[int, int] = {}
        for ino, rule in rules:
            if ino == s.ROOT_INO or not rule.max_age:
                continue
            home = zones.namespace_of(t, ino) or 0
            shortest[home] = min(shortest.get(home, rule.max_age), rule.max_age)
        spaces = [0] + [s.from_u64(k) for k, _ in t.scan("namespaces", b"")]
        out = {}
        for home in spaces:
            ages = [a for a in (*everywhere, shortest.get(home, 0)) if a]
            if ages:
                out[home] = now_ns - min(ages) * retention.NS_PER_S
        return out

    def _expired_names(self, t: Txn, entry: ingest.Ingested, now_ns: int) -> list[tuple[int, bytes]]:
        """The names of the file under a rule that expires it."""
        return [
            (parent, name)
            for parent, name in t.links_of(entry.ino)
            if retention.expired(retention.folder_rules(t, parent), entry.time_ns, now_ns)
        ]

    async def sweep(self, *, dry_run: bool = False) -> DryRun:
        """One sweep over every rule (resumed where a cut one stopped); with `dry_run`,
        only what it would delete."""
        if self._sweeping and not dry_run:
            return DryRun()
        self._sweeping = not dry_run
        try:
            return await self._sweep(dry_run)
        finally:
            if not dry_run:
                self._sweeping = False

    async def _sweep(self, dry_run: bool) -> DryRun:
        st = self.state() if not dry_run else SweepState()
        if not st.running:
            st = SweepState(running=True, started=time.time(), finished=st.finished)
        now_ns = time.time_ns()
        report = DryRun()
        with self.meta.read() as t:
            cutoffs = self._widest_cutoffs(t, now_ns)
        if not dry_run:
            log.info("retention sweep %s", "resumed" if st.removed or st.after != (0, 0) else "started")
        for home in sorted(cutoffs):
            if home < st.namespace:
                continue
            after = st.after if home == st.namespace else (0, 0)
            while True:
                with self.meta.read() as t:
                    batch = []
                    for entry in ingest.oldest(t, home or None, after=after, before_ns=cutoffs[home]):
                        batch.append((entry, self._expired_names(t, entry, now_ns), self._held(t, entry.ino)))
                        if len(batch) >= BATCH:
                            break
                    paths = {e.ino: [child_path(t, p, n) for p, n in names] for e, names, _ in batch} if dry_run else {}
                if not batch:
                    break
                for i, (entry, names, held) in enumerate(batch, 1):
                    if dry_run:
                        if names and held:
                            report.held += 1
                        elif names:
                            report.count += 1
                            report.paths += paths[entry.ino][: max(0, DRY_RUN_LISTED - len(report.paths))]
                        continue
                    if names and held:
                        st.skipped += 1
                    elif names:
                        why = f"ingested {_iso(entry.time_ns)}, past its maximum age"
                        if await self._remove(entry.ino, names, "expire", why):
                            st.removed += 1
                        else:
                            st.skipped += 1
                    if i % SAVE_EVERY == 0 or i == len(batch):  # a restart goes on after this file
                        st.namespace, st.after = home, (entry.time_ns, entry.ino)
                        self._save(st)
                after = (batch[-1][0].time_ns, batch[-1][0].ino)
                await trio.lowlevel.checkpoint()
        if not dry_run:
            log.info("retention sweep done: %d files deleted, %d left (on hold or in use)", st.removed, st.skipped)
            self._save(SweepState(finished=time.time(), last_removed=st.removed, last_skipped=st.skipped))
        return report

    def _save(self, st: SweepState) -> None:
        with self.meta.write() as t:  # a LOCAL_META entry: not journaled
            t.put("meta", s.META_SWEEP, st.pack())

    @staticmethod
    def _held(t: Txn, ino: int) -> bool:
        inode = t.inode_or_none(ino)
        return inode is not None and holds.is_held(t, inode)

    # --- eviction ---------------------------------------------------------------------
    async def evict(self, namespace: int) -> int:
        """Remove the oldest files of `namespace` until it is under its eviction size;
        how many files went."""
        after = (0, 0)
        pending = 0  # bytes of removed files still open: they count until closed
        gone = 0
        while True:
            now_ns = time.time_ns()
            with self.meta.read() as t:
                limit = quota.limits(t, namespace).evict_bytes
                used = quota.usage(t, namespace).bytes - pending
                if not limit or used <= limit:
                    break
                batch = []
                for entry in ingest.oldest(t, namespace, after=after):
                    inode = t.inode_or_none(entry.ino)
                    if inode is None or holds.is_held(t, inode):
                        continue
                    if retention.retained(retention.applying(t, inode), entry.time_ns, now_ns):
                        continue
                    batch.append((entry, list(t.links_of(entry.ino)), quota.counted_bytes(inode)))
                    if len(batch) >= BATCH:
                        break
            if not batch:
                log.warning("namespace %d is %d bytes past its eviction size, and what is left is held, "
                            "under its retention minimum or in use", namespace, used - limit)  # fmt: skip
                self._stuck[namespace] = time.monotonic()
                break
            for entry, names, size in batch:
                after = (entry.time_ns, entry.ino)
                why = f"ingested {_iso(entry.time_ns)}, the oldest while the namespace is past its size"
                if not await self._remove(entry.ino, names, "evict", why):
                    continue
                gone += 1
                with self.meta.read() as t:
                    if t.inode_or_none(entry.ino) is not None:  # still open somewhere
                        pending += size
                    if quota.usage(t, namespace).bytes - pending <= limit:
                        break
        if gone:
            log.info("eviction: %d files removed from namespace %d", gone, namespace)
        return gone


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / retention.NS_PER_S))
