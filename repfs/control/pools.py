"""Pools at runtime: add, reweight, set thresholds, drain, remove, clear — while mounted.

Every change follows the same steps, one change at a time:

1. check it (`UnknownName`, `InvalidRequest`, `RequestRefused`) and, for a new pool, check the
   pool itself: reachable, and either empty (its superblock is written) or holding this
   filesystem's superblock; another filesystem's pool is refused;
2. write `FS_DIR/rebalance.pending`, then the new repfs.toml (atomically);
3. apply it to the pool set (placement) and the health monitor;
4. queue in the deficit table exactly the blocks whose targets changed (placement before
   and after are compared block by block; a drain also queues every block the pool
   holds), sync the metadata and remove `rebalance.pending`.

The repairer then copies each queued block to its new targets and deletes the copies
left elsewhere, at `--repair-rate`. A crash between 2 and 4 leaves `rebalance.pending`:
the next mount queues every block whose holders differ from its targets. The deficit
table and the `draining` flag in repfs.toml survive restarts, so a rebalance or drain
goes on after one.

A drained pool ("empty") holds no block any record points to; its metadata objects
(journal segments, snapshots) that no other pool holds are copied to the others first.
Removing a pool is refused while it holds the only copy of a block, or while removing it
would leave a block with fewer than `replicas` copies on pools that are not failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import trio

from repfs.backend.health import HealthMonitor
from repfs.backend.keys import JOURNAL_PREFIX, SNAPSHOT_PREFIX, SUPERBLOCK_KEY
from repfs.backend.metaobjects import MetaObjects
from repfs.backend.poolset import Placement, PoolSet
from repfs.backend.state import PoolState
from repfs.backend.usage import UsageMonitor
from repfs.codec.superblock import Superblock
from repfs.config import FsConfig, PoolSpec, parse_pool, redact_url
from repfs.errors import (
    ConfigError,
    CorruptObject,
    InvalidRequest,
    ObjectNotFound,
    PoolNotAnswering,
    RepfsError,
    RequestRefused,
    StorageError,
    UnknownName,
)
from repfs.fs.repair import Repairer
from repfs.journal.writer import JournalWriter
from repfs.meta.records import BlockRecord
from repfs.meta.store import MetaStore
from repfs.volume import OpenedFs, open_pool, write_config

log = logging.getLogger(__name__)

SCAN_BATCH = 1000  # block records looked at between checkpoints
TRACK_INTERVAL = 2.0  # seconds between counts of what a draining pool still holds
CHECK_TIMEOUT = 60.0  # seconds to check a new pool
PENDING_NAME = "rebalance.pending"


@dataclass
class Drain:
    """A pool being emptied: how many blocks it held and still holds."""

    started: float
    total: int | None = None  # blocks held when counting began
    remaining: int | None = None
    done: bool = False
    finished: float | None = None


# --- what the changes answer -----------------------------------------------------------


@dataclass(frozen=True)
class PoolAdded:
    pool: str
    initialised: bool  # the pool was empty and got this filesystem's superblock
    queued: int  # blocks queued to move onto it


@dataclass(frozen=True)
class PoolChanged:
    pool: str
    changed: tuple[str, ...]  # the settings changed (weight, capacity, warn_threshold, ...)
    queued: int


@dataclass(frozen=True)
class DrainStarted:
    pool: str
    queued: int
    drain: Drain


@dataclass(frozen=True)
class PoolRequeued:
    """A change that moved blocks back or out: undrain."""

    pool: str
    queued: int


@dataclass(frozen=True)
class CopiesSet:
    replicas: int
    write_quorum: int
    queued: int


@dataclass(frozen=True)
class PoolStateSet:
    """Offline or online: the pool's state now."""

    pool: str
    state: str


@dataclass(frozen=True)
class PoolCleared:
    pool: str
    state: str
    queued: int  # the repair list now, counting what the pool gets back


@dataclass(frozen=True)
class PoolRemoved:
    pool: str
    records_updated: int  # block records that no longer name it


@dataclass
class Rebalance:
    reason: str
    started: float
    queued: int = 0
    finished_queueing: bool = False

    def info(self) -> dict[str, Any]:
        return {"reason": self.reason, "started": self.started, "queued": self.queued}


def count_entries(meta: MetaStore, db: str) -> int:
    """Entries of one database, from LMDB's own count (no scan)."""
    with meta.read() as t:
        return int(t.txn.stat(t.db[db])["entries"])


class PoolManager:
    def __init__(
        self,
        opened: OpenedFs,
        meta: MetaStore,
        poolset: PoolSet,
        objects: MetaObjects,
        health: HealthMonitor,
        repairer: Repairer,
        usage: UsageMonitor,
        journal: JournalWriter,
        *,
        track_interval: float = TRACK_INTERVAL,
    ) -> None:
        self.opened = opened
        self.meta = meta
        self.poolset = poolset
        self.objects = objects
        self.health = health
        self.journal = journal  # its `copies` follow the replicas
        self.repairer = repairer
        self.usage = usage
        self.track_interval = track_interval
        self.pending = opened.paths.root / PENDING_NAME
        self.drains: dict[str, Drain] = {
            p.name: Drain(time.time()) for p in opened.config.pools if p.draining
        }
        self.rebalances: list[Rebalance] = []
        self.queued_total = 0
        self._lock = trio.Lock()
        self._wake = trio.Event()

    @property
    def config(self) -> FsConfig:
        return self.opened.config

    def spec(self, name: str) -> PoolSpec:
        for p in self.config.pools:
            if p.name == name:
                return p
        raise UnknownName(f"no pool named {name!r}; pools are {', '.join(p.name for p in self.config.pools)}")

    # --- persistence ------------------------------------------------------------------

    def _commit(self, config: FsConfig) -> None:
        """Mark a placement change as pending, then write repfs.toml atomically."""
        fd = os.open(self.pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{time.time()}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write(config)

    def _set_offline(self, name: str, offline: bool) -> None:
        self._write(self._with_pools([replace(p, offline=offline) if p.name == name else p for p in self.config.pools]))

    def _write(self, config: FsConfig) -> None:
        """Write repfs.toml for a change that moves no block (a pool taken offline)."""
        write_config(self.opened.paths.config, config)
        self.opened.config = config

    def _settled(self) -> None:
        """The change's blocks are queued and synced: nothing is pending any more."""
        self.meta.sync()
        with contextlib.suppress(FileNotFoundError):
            self.pending.unlink()

    def _with_pools(self, pools: list[PoolSpec]) -> FsConfig:
        try:
            return FsConfig(
                pools=tuple(pools),
                replicas=self.config.replicas,
                write_quorum=self.config.write_quorum,
                block_size=self.config.block_size,
                extra=self.config.extra,
            )
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None

    # --- queueing the blocks that move ------------------------------------------------------

    async def _scan(self, visit: Any) -> None:
        """`visit(block_id, record, txn)` for every block record, in write transactions of
        `SCAN_BATCH` records with a checkpoint between them (users go on meanwhile)."""
        start: bytes | None = None
        while True:
            with self.meta.read() as t:
                batch = []
                for k, _ in t.scan("blocks", b"", start=start):
                    if k == start:
                        continue
                    batch.append(k)
                    if len(batch) >= SCAN_BATCH:
                        break
            if not batch:
                return
            with self.meta.write() as t:
                for block_id in batch:
                    raw = t.get("blocks", block_id)
                    if raw is not None:
                        visit(block_id, BlockRecord.unpack(raw), t)
            start = batch[-1]
            await trio.lowlevel.checkpoint()

    async def queue_moved(self, before: Placement, reason: str, *, held_by: str | None = None) -> int:
        """Queue for repair every live block whose targets differ between `before` and
        now (and, with `held_by`, every block that pool holds); returns how many."""
        after = self.poolset.placement()
        job = Rebalance(reason, time.time())
        self.rebalances = [*self.rebalances[-9:], job]

        def visit(block_id: bytes, rec: BlockRecord, t: Any) -> None:
            if rec.refcount <= 0:
                return
            moved = set(before.targets(block_id)) != set(after.targets(block_id))
            if moved or (held_by is not None and held_by in rec.pools):
                t.put("deficit", block_id, b"")
                job.queued += 1

        await self._scan(visit)
        job.finished_queueing = True
        self.queued_total += job.queued
        log.info("%s: %d blocks queued to move", reason, job.queued)
        self.repairer.wake()
        return job.queued

    async def reconcile(self) -> int:
        """After a crash in the middle of a change: queue every block whose holders are not
        exactly its targets."""
        job = Rebalance("resuming a placement change cut short", time.time())
        self.rebalances.append(job)

        def visit(block_id: bytes, rec: BlockRecord, t: Any) -> None:
            if rec.refcount > 0 and set(rec.pools) != set(self.poolset.targets(block_id)):
                t.put("deficit", block_id, b"")
                job.queued += 1

        await self._scan(visit)
        job.finished_queueing = True
        self.queued_total += job.queued
        self._settled()
        log.warning("a change of pools was cut short; %d blocks queued to move", job.queued)
        self.repairer.wake()
        return job.queued

    # --- the changes -------------------------------------------------------------------------

    async def add(self, spec: PoolSpec, *, create: bool = False) -> PoolAdded:
        """Add a pool; a local pool's directory must exist unless `create` (as at mount:
        a missing directory is a disk that is not there, never something to make)."""
        async with self._lock:
            if spec.name in self.poolset.pool_names:
                raise RequestRefused(f"a pool named {spec.name} exists already")
            if spec.draining:
                raise InvalidRequest("a new pool cannot start out draining")
            config = self._with_pools([*self.config.pools, spec])
            if spec.kind == "file" and not create and not spec.path.is_dir():
                raise InvalidRequest(
                    f"pool {spec.name}: directory {spec.path} does not exist; create it first, or ask for it "
                    "to be made (repfs-admin pools add --create)"
                )
            try:
                pool = open_pool(spec, create=spec.kind == "file" and create)
            except RepfsError as exc:
                raise InvalidRequest(f"cannot open pool {spec.name}: {exc}") from None
            try:
                initialised = await self._check_new_pool(spec, pool)
            except BaseException:
                await pool.close()
                raise
            before = self.poolset.placement()
            self._commit(config)
            self.poolset.add_pool(
                pool, spec.weight, capacity=spec.capacity, thresholds=(spec.warn_threshold, spec.critical_threshold)
            )
            self.opened.pools[spec.name] = pool
            self.health.add_pool(spec.name, pool)
            queued = await self.queue_moved(before, f"pool {spec.name} added")
            self._settled()
            self.usage.refresh()
            return PoolAdded(spec.name, initialised, queued)

    async def _check_new_pool(self, spec: PoolSpec, pool: Any) -> bool:
        """Reachable, and empty or this filesystem's; writes the superblock on an empty
        pool. True when it did."""
        where = f"pool {spec.name} ({redact_url(spec.url)})"
        mine = self.health.superblock
        try:
            with trio.fail_after(CHECK_TIMEOUT):
                await pool.ping()  # an S3 pool whose bucket is missing says so here
                try:
                    found: Superblock | None = Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
                except ObjectNotFound:
                    found = None
                if found is not None:
                    if found.fs_uuid != mine.fs_uuid:
                        raise RequestRefused(f"{where} belongs to filesystem {found.fs_uuid}, not {mine.fs_uuid}")
                    log.warning("%s already holds this filesystem's superblock: it was part of it before", where)
                    return False
                async for key in pool.list(""):
                    raise RequestRefused(f"{where} is not empty (it holds {key!r}) and has no repfs superblock")
                await pool.put(SUPERBLOCK_KEY, mine.to_bytes())
                return True
        except CorruptObject:
            raise RequestRefused(f"{where} holds an unreadable superblock") from None
        except StorageError as exc:
            raise InvalidRequest(f"{where} cannot be used: {exc}") from None
        except trio.TooSlowError:
            raise InvalidRequest(f"{where} did not answer within {CHECK_TIMEOUT:g} s") from None

    async def set(
        self,
        name: str,
        *,
        weight: float | None = None,
        capacity: int | None = None,
        warn: float | None = None,
        critical: float | None = None,
    ) -> PoolChanged:
        async with self._lock:
            spec = self.spec(name)
            changes: dict[str, Any] = {}
            if weight is not None:
                changes["weight"] = float(weight)
            if capacity is not None:
                changes["capacity"] = int(capacity)
            if warn is not None:
                changes["warn_threshold"] = float(warn)
            if critical is not None:
                changes["critical_threshold"] = float(critical)
            if not changes:
                raise InvalidRequest("nothing to change: give weight, capacity, warn or critical")
            try:
                new = replace(spec, **changes)
            except ConfigError as exc:
                raise InvalidRequest(str(exc)) from None
            config = self._with_pools([new if p.name == name else p for p in self.config.pools])
            before = self.poolset.placement()
            self._commit(config)
            self.poolset.set_capacity(name, new.capacity)
            self.poolset.set_thresholds(name, new.warn_threshold, new.critical_threshold)
            queued = 0
            if new.weight != spec.weight:
                self.poolset.set_weight(name, new.weight)
                why = f"pool {name} reweighted from {spec.weight:g} to {new.weight:g}"
                queued = await self.queue_moved(before, why)
            self._settled()
            if capacity is not None:
                await self.usage.measure_now()
            return PoolChanged(name, tuple(sorted(changes)), queued)

    async def drain(self, name: str) -> DrainStarted:
        async with self._lock:
            spec = self.spec(name)
            if spec.draining:
                return DrainStarted(name, 0, self.drains[name])
            placing = [p for p in self.config.pools if not p.draining and p.name != name]
            if len(placing) < self.config.replicas:
                raise RequestRefused(
                    f"draining {name} would leave {len(placing)} pools to hold {self.config.replicas} replicas "
                    "of every block; add a pool first"
                )
            config = self._with_pools([replace(p, draining=True) if p.name == name else p for p in self.config.pools])
            before = self.poolset.placement()
            self._commit(config)
            self.poolset.set_draining(name, True)
            self.drains[name] = Drain(time.time())
            queued = await self.queue_moved(before, f"pool {name} draining", held_by=name)
            self._settled()
            self._wake.set()
            return DrainStarted(name, queued, self.drains[name])

    async def undrain(self, name: str) -> PoolRequeued:
        async with self._lock:
            spec = self.spec(name)
            if not spec.draining:
                raise RequestRefused(f"pool {name} is not draining")
            config = self._with_pools([replace(p, draining=False) if p.name == name else p for p in self.config.pools])
            before = self.poolset.placement()
            self._commit(config)
            self.poolset.set_draining(name, False)
            self.drains.pop(name, None)
            queued = await self.queue_moved(before, f"pool {name} no longer draining")
            self._settled()
            return PoolRequeued(name, queued)

    async def set_copies(self, *, replicas: int | None = None, write_quorum: int | None = None) -> CopiesSet:
        """Change the number of copies of every block (and of metadata objects) or the write
        quorum at runtime: kept in repfs.toml; the copies to add or remove are queued for the
        repairer, which `repair status` counts down."""
        async with self._lock:
            old = self.config
            try:
                config = FsConfig(
                    pools=old.pools,
                    replicas=old.replicas if replicas is None else replicas,
                    write_quorum=old.write_quorum if write_quorum is None else write_quorum,
                    block_size=old.block_size,
                    extra=old.extra,
                )
            except ConfigError as exc:
                raise InvalidRequest(str(exc)) from None
            placing = [n for n in self.poolset.pool_names if not self.poolset.draining(n)]
            if config.replicas > len(placing):
                raise InvalidRequest(f"replicas {config.replicas}: only {len(placing)} pools take blocks")
            before = self.poolset.placement()
            self._commit(config)
            self.poolset.replicas, self.poolset.write_quorum = config.replicas, config.write_quorum
            self.journal.copies = config.replicas
            queued = 0
            if config.replicas != old.replicas:
                queued = await self.queue_moved(before, f"replicas {old.replicas} -> {config.replicas}")
            self._settled()
            log.info("replicas %d, write quorum %d (were %d and %d)", config.replicas, config.write_quorum,
                     old.replicas, old.write_quorum)  # fmt: skip
            return CopiesSet(config.replicas, config.write_quorum, queued)

    async def offline(self, name: str) -> PoolStateSet:
        """Take a pool out on purpose (to fix it by hand): no traffic, no alarms, and so it
        stays across restarts (`offline = true` in repfs.toml) until it is put back."""
        async with self._lock:
            spec = self.spec(name)
            if self.poolset.draining(name):
                raise RequestRefused(f"pool {name} is draining; undrain it before taking it offline")
            self.health.take_offline(name)
            if not spec.offline:
                self._set_offline(name, True)
            return PoolStateSet(name, self.poolset.state(name).value)

    async def online(self, name: str) -> PoolStateSet:
        """Put an offline pool back: it is challenged (verifying), then used again."""
        async with self._lock:
            spec = self.spec(name)
            try:
                self.health.put_online(name)
            except ValueError as exc:
                raise RequestRefused(str(exc)) from None
            if spec.offline:
                self._set_offline(name, False)
            return PoolStateSet(name, self.poolset.state(name).value)

    async def clear(self, name: str) -> PoolCleared:
        """Accept a failed pool as it is; what it lacks is copied back (`repair status`)."""
        async with self._lock:
            self.spec(name)
            try:
                await self.health.clear(name)
            except ValueError as exc:
                raise RequestRefused(str(exc)) from None
            except (StorageError, trio.TooSlowError) as exc:
                raise PoolNotAnswering(f"pool {name} does not answer: {exc or 'no answer in time'}") from None
            return PoolCleared(name, self.poolset.state(name).value, self.deficit())

    async def remove(self, name: str) -> PoolRemoved:
        async with self._lock:
            self.spec(name)
            if self.poolset.state(name).serves:
                await self.rescue_meta(name)
            rest = [p for p in self.config.pools if p.name != name]
            if len(rest) < self.config.replicas:
                raise RequestRefused(
                    f"removing {name} would leave {len(rest)} pools for {self.config.replicas} replicas; add one first"
                )
            config = self._with_pools(rest)
            only, short = self._copies_elsewhere(name)
            if only or short:
                raise RequestRefused(
                    f"pool {name} holds the only copy of {only} blocks, and {short} more would keep fewer than "
                    f"{self.config.replicas} copies without it; drain it first (repfs-admin pools drain {name} --wait)"
                )
            # from here to the pool set's removal nothing awaits: no write can slip in between
            self._commit(config)
            pool = self.poolset.remove_pool(name)
            self.health.remove_pool(name)
            self.opened.pools.pop(name, None)
            self.drains.pop(name, None)
            stripped = await self._strip(name)
            self._settled()
            await self.poolset.idle(name)
            try:
                await pool.close()
            except (StorageError, OSError) as exc:
                log.warning("error closing pool %s: %s", name, exc)
            log.info("pool %s removed; %d block records no longer name it", name, stripped)
            return PoolRemoved(name, stripped)

    def _copies_elsewhere(self, name: str) -> tuple[int, int]:
        """(blocks whose only copy `name` holds, blocks that would keep fewer than
        `replicas` trusted copies without it)."""
        rest = [n for n in self.poolset.pool_names if n != name]
        trusted = {n for n in rest if self.poolset.state(n) != PoolState.FAILED}
        need = min(self.config.replicas, len(rest))
        only = short = 0
        with self.meta.read() as t:
            for _, raw in t.scan("blocks", b""):
                rec = BlockRecord.unpack(raw)
                if name not in rec.pools or rec.refcount <= 0:
                    continue
                others = [p for p in rec.pools if p in trusted]
                if not others:
                    only += 1
                elif len(others) < need:
                    short += 1
        return only, short

    async def _strip(self, name: str) -> int:
        stripped = 0

        def visit(block_id: bytes, rec: BlockRecord, t: Any) -> None:
            nonlocal stripped
            if name not in rec.pools:
                return
            rec.pools = tuple(p for p in rec.pools if p != name)
            t.put_block_record(block_id, rec)
            stripped += 1
            if rec.refcount > 0 and set(rec.pools) != set(self.poolset.targets(block_id)):
                t.put("deficit", block_id, b"")

        await self._scan(visit)
        self.repairer.wake()
        return stripped

    async def rescue_meta(self, name: str) -> int:
        """Copy metadata objects (journal segments, snapshots) that only `name` holds to
        the pools that take new objects; returns how many."""
        copied = 0
        for prefix in (JOURNAL_PREFIX, SNAPSHOT_PREFIX):
            held = await self.objects.list_meta(prefix, every_pool=True)
            for key, holders in held.items():
                if [h for h in holders if h != name and not self.poolset.draining(h)]:
                    continue
                try:
                    data = await self.objects.get_from(name, key)
                    await self.objects.put_meta(key, data)
                except StorageError as exc:
                    raise RequestRefused(f"cannot copy {key} from pool {name} to the other pools: {exc}") from None
                copied += 1
        if copied:
            log.warning("pool %s: copied %d metadata objects only it held to the other pools", name, copied)
        return copied

    # --- progress ----------------------------------------------------------------------------

    def _held(self, names: list[str]) -> dict[str, int]:
        counts = dict.fromkeys(names, 0)
        with self.meta.read() as t:
            for _, raw in t.scan("blocks", b""):
                for p in BlockRecord.unpack(raw).pools:
                    if p in counts:
                        counts[p] += 1
        return counts

    async def track(self) -> None:
        """Count what draining pools still hold; a pool that holds nothing is drained."""
        names = [n for n in self.drains if n in self.poolset.pool_names]
        if not names:
            return
        counts = self._held(names)
        for name in names:
            d = self.drains[name]
            d.remaining = counts[name]
            d.total = max(d.total or 0, counts[name])
            if d.remaining == 0 and not d.done and self.poolset.state(name).serves:
                try:
                    await self.rescue_meta(name)
                except RequestRefused as exc:
                    log.warning("pool %s holds no blocks any more, but: %s", name, exc)
                    continue
                d.done, d.finished = True, time.time()
                log.info("pool %s is drained: it holds no blocks; remove it with: repfs-admin pools remove %s",
                            name, name)  # fmt: skip
            elif d.remaining > 0:
                d.done = False

    def deficit(self) -> int:
        return count_entries(self.meta, "deficit")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: finish a change a crash cut short, then follow draining pools."""
        task_status.started()
        if self.pending.exists():
            await self.reconcile()
        elif self.deficit():
            self.repairer.wake()  # a rebalance or drain a restart cut short goes on now
        while True:
            self._wake = trio.Event()
            await self.track()
            if self.drains:
                with trio.move_on_after(self.track_interval):
                    await self._wake.wait()
            else:
                await self._wake.wait()


def spec_from_request(body: dict[str, Any]) -> PoolSpec:
    """A new pool from an admin request. Inline S3 secrets are refused: name a
    credentials_file (mode 0600), or let the daemon's environment provide them."""
    if not isinstance(body.get("name"), str):
        raise InvalidRequest("give the new pool's name")
    if "access_key" in body or "secret_key" in body:
        raise InvalidRequest("secrets do not travel over the admin socket: give credentials_file instead")
    try:
        return parse_pool(body, 0, source="request")
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None

