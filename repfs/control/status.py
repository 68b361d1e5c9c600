"""One status snapshot of a mounted filesystem: what `GET /v1/status` answers and what a
metrics scrape exports, computed once, in one place, so the two never disagree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repfs.config import redact_url
from repfs.meta import schema

if TYPE_CHECKING:
    from repfs.control.pools import PoolManager
    from repfs.stack import Layers


@dataclass
class PoolStatus:
    name: str
    url: str  # without credentials
    kind: str
    state: str
    weight: float
    draining: bool
    capacity: int
    used: int | None
    total: int | None
    free: int | None
    usage_ratio: float | None
    warn_threshold: float
    critical_threshold: float
    level: str
    full: bool
    usage_measured: float | None
    drain: dict[str, Any] | None


@dataclass
class RepairStatus:
    deficit: int
    repaired: int
    removed: int
    unrecoverable: int
    read_repairs: int
    rate_limit: float | None
    rebalance: dict[str, Any]
    drains: dict[str, dict[str, Any]]


@dataclass
class CacheStatus:
    dirty_bytes: int
    clean_bytes: int
    memory_bytes: int  # of the clean bytes, those held in memory only (streamed blocks)
    spare_bytes: int  # zeroed files kept for new blocks, apart from the clean and dirty bytes
    limit_bytes: int
    dirty_limit_bytes: int
    upload_queue: int
    upload_errors: int


@dataclass
class JournalStatus:
    seq: int
    stored: int
    lag: int
    queued_bytes: int


@dataclass
class AccountStatus:
    total: int
    refused: int
    not_on_host: list[str]


@dataclass
class UserUsage:
    name: str
    bytes: int
    files: int
    max_bytes: int  # 0: no limit
    max_files: int
    soft_bytes: int
    over_soft: bool


@dataclass
class SharingStatus:
    shares: int  # rows of the share table
    locks: int  # files locked now


@dataclass
class ExpiryStatus:
    rules: int  # retention rules (folders with one)
    removed: dict[str, int]  # files removed since mount, by "retention" and "eviction"
    sweep_running: bool
    sweep_finished: float  # unix time the last sweep ended (0: never)


@dataclass
class Status:
    fs_uuid: str
    fs_dir: str
    replicas: int
    write_quorum: int
    block_size: int
    pools: list[PoolStatus]
    alerts: list[str]
    repair: RepairStatus
    cache: CacheStatus
    journal: JournalStatus
    accounts: AccountStatus
    sharing: SharingStatus
    users: list[UserUsage]
    expiry: ExpiryStatus
    scrub_finished_ns: int  # when a scrub last went through every block (else the filesystem's birth)
    blocks: dict[str, int] = field(default_factory=dict)  # the block layer's counters

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pool_status(layers: Layers, pools: PoolManager, name: str) -> PoolStatus:
    spec = pools.spec(name)
    poolset = layers.poolset
    space = poolset.space(name)
    drain = pools.drains.get(name)
    return PoolStatus(
        name=name,
        url=redact_url(spec.url),
        kind=spec.kind,
        state=poolset.state(name).value,
        weight=poolset.weight(name),
        draining=poolset.draining(name),
        capacity=space.capacity,
        used=space.used,
        total=space.total,
        free=space.free,
        usage_ratio=round(space.ratio, 6) if space.ratio is not None else None,
        warn_threshold=space.warn,
        critical_threshold=space.critical,
        level=space.level,
        full=space.full,
        usage_measured=layers.usage.measured.get(name),
        drain=dataclasses.asdict(drain) if drain is not None else None,
    )


def user_usage(layers: Layers) -> list[UserUsage]:
    out = []
    for account in layers.accounts.list():
        used, lim = layers.accounts.usage(account)
        over = bool(lim.soft_bytes and used.bytes > lim.soft_bytes)
        out.append(UserUsage(account.name, used.bytes, used.files, lim.max_bytes, lim.max_files, lim.soft_bytes, over))
    return out


def alerts(layers: Layers) -> list[str]:
    """What an operator must look at: pools out of service or over a threshold."""
    out = []
    poolset = layers.poolset
    for name in poolset.pool_names:
        state = poolset.state(name)
        if state.value in ("down", "failed", "verifying"):
            out.append(f"pool {name} is {state.value}")
        space = poolset.space(name)
        if space.level in ("warn", "critical"):
            out.append(
                f"pool {name} is over its {space.level} threshold: {(space.ratio or 0) * 100:.1f}% used "
                f"(warn {space.warn * 100:g}%, critical {space.critical * 100:g}%)"
                + ("; it takes no new blocks" if space.level == "critical" else "")
            )
    for user in user_usage(layers):
        if user.over_soft:
            out.append(f"account {user.name} is past its soft limit: {user.bytes} bytes of {user.soft_bytes}")
    return out


def repair_status(layers: Layers) -> RepairStatus:
    pools = layers.pools
    stats = layers.repairer.stats
    return RepairStatus(
        deficit=pools.deficit(),
        repaired=stats["repaired"],
        removed=stats["removed"],
        unrecoverable=stats["unrecoverable"],
        read_repairs=layers.store.repairs,
        rate_limit=layers.repairer.rate.rate,
        rebalance={
            "queued_total": pools.queued_total,
            "recent": [job.info() for job in pools.rebalances],
            "pending": pools.pending.exists(),
        },
        drains={name: dataclasses.asdict(d) for name, d in pools.drains.items()},
    )


def take(layers: Layers) -> Status:
    """The snapshot, now."""
    config = layers.opened.config
    cache = layers.cache
    seq = layers.meta.seq
    stored = int(getattr(layers.journal, "stored", seq))
    book = layers.accounts.book
    with layers.meta.read() as t:
        finished = t.get("meta", schema.META_SCRUB_FINISHED)
        shares = int(t.txn.stat(t.db["shares"])["entries"])
        rules = int(t.txn.stat(t.db["retention"])["entries"])
    sweep = layers.expiry.state()
    return Status(
        fs_uuid=layers.opened.superblock.fs_uuid,
        fs_dir=str(layers.opened.paths.root),
        replicas=config.replicas,
        write_quorum=config.write_quorum,
        block_size=config.block_size,
        pools=[pool_status(layers, layers.pools, n) for n in layers.poolset.pool_names],
        alerts=alerts(layers),
        repair=repair_status(layers),
        cache=CacheStatus(
            dirty_bytes=cache.dirty_bytes,
            clean_bytes=cache.clean_bytes,
            memory_bytes=cache.memory_bytes,
            spare_bytes=cache.spare_bytes,
            limit_bytes=cache.max_bytes,
            dirty_limit_bytes=cache.max_dirty,
            upload_queue=cache.dirty_blocks(),
            upload_errors=cache.upload_errors,
        ),
        journal=JournalStatus(
            seq=seq,
            stored=stored,
            lag=max(0, seq - stored),
            queued_bytes=int(getattr(layers.journal, "queued_bytes", 0)),
        ),
        accounts=AccountStatus(
            total=len(book), refused=book.refused_count(), not_on_host=list(layers.accounts.not_on_host)
        ),
        sharing=SharingStatus(shares=shares, locks=len(layers.locks.held())),
        users=user_usage(layers),
        expiry=ExpiryStatus(rules, dict(layers.expiry.removed), sweep.running, sweep.finished),
        scrub_finished_ns=schema.from_u64(finished) if finished is not None else layers.opened.superblock.created_ns,
        blocks={**layers.blocks.stats, **layers.compactor.stats},
    )
