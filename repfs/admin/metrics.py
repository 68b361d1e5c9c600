"""Prometheus metrics: every metric name of repfs is in this module (see docs/METRICS.md).

Three kinds:
- observed as things happen (histograms and counters in `Metrics`): pool request
  latency and errors, FUSE operation latency, errors and bytes; fed by the pool set's
  `observer` hook and the FUSE boundary's;
- read at scrape time from the live daemon (`LiveCollector`): pool space, thresholds and
  states, replica deficit, repair, rebalance, drain and scrub progress, cache, upload
  queue, journal lag;
- the standard process metrics of prometheus_client (`STANDARD`: CPU, memory, open
  files, start time; the Python version).

Each daemon has a registry of its own (never the global one), served inside the trio
loop at `--metrics ADDR:PORT` (`/metrics`), so collection reads the daemon's state on its
own thread. `render` speaks what the scraper asks for (Prometheus text or OpenMetrics,
gzip or not) through prometheus_client's own exposition helpers. Series labelled with a
pool that is no longer one of the filesystem's are dropped at the next scrape.

A FUSE answer that only says something is not there (`ROUTINE`: ENOENT from lookup,
ENODATA for an absent extended attribute, ...) is not an error: `ls -l` alone asks for
absent ACLs on every file. Those answers are counted apart, in
`repfs_fuse_op_negative_answers_total`, and never in `repfs_fuse_op_errors_total`.

Nothing here ever holds a secret: labels are pool names, operation names and errno names.
"""

from __future__ import annotations

import errno
import gzip
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from repfs import __version__
from repfs.backend.state import PoolState
from repfs.control import status
from repfs.control.pools import count_entries

if TYPE_CHECKING:
    from repfs.control.pools import PoolManager
    from repfs.control.scrub import OnlineScrub
    from repfs.stack import Layers


class Daemon(Protocol):
    """What a scrape reads of the running daemon (repfs.admin.service.Daemon)."""

    layers: Layers
    pools: PoolManager
    scrub: OnlineScrub
    started: float

    def admin_requests(self) -> int: ...


# name -> help: the documented list (docs/METRICS.md is checked against it by a test)
HELP: dict[str, str] = {
    "repfs_info": "Always 1; labels: version, fs_uuid",
    "repfs_start_time_seconds": "When this daemon started (unix time)",
    "repfs_pool_used_bytes": "Bytes a pool holds (repfs's objects), as last measured and kept up to date since",
    "repfs_pool_total_bytes": "The capacity thresholds apply to: the configured capacity, else the pool's own total",
    "repfs_pool_free_bytes": "Free bytes the pool reports (0 when it cannot tell)",
    "repfs_pool_usage_ratio": "Used share of the capacity (of the whole disk for a local pool with no capacity)",
    "repfs_pool_warn_ratio": "The pool's warn threshold (share of its capacity)",
    "repfs_pool_critical_ratio": "The pool's critical threshold; past it the pool takes no new blocks",
    "repfs_pool_level": "0 under both thresholds, 1 over warn, 2 over critical",
    "repfs_pool_full": "1 when the pool takes no new blocks for lack of space",
    "repfs_pool_state": "1 for the pool's current state (up, down, verifying, failed, draining, offline), else 0",
    "repfs_pool_weight": "The pool's placement weight",
    "repfs_pool_usage_measured_timestamp_seconds": "When the pool's usage was last measured (unix time)",
    "repfs_pool_request_seconds": "Time of requests to a pool, retries included, by operation",
    "repfs_pool_request_errors_total": "Failed requests to a pool, by operation and kind (unavailable, full, ...)",
    "repfs_replica_deficit_blocks": "Blocks not exactly on their placement pools (missing copies, or to be moved)",
    "repfs_accounts": "Accounts of the filesystem",
    "repfs_accounts_refused": "Accounts refused now: disabled or past their validity",
    "repfs_shares": "Shares: (item, account) pairs in the share table",
    "repfs_user_bytes": "Bytes an account's namespace holds (st_size of its files and symlinks, each inode once)",
    "repfs_user_files": "Files, folders and other inodes in an account's namespace",
    "repfs_user_quota_bytes": "An account's hard limit on bytes (0: none)",
    "repfs_user_quota_files": "An account's hard limit on files (0: none)",
    "repfs_user_over_soft_limit": "1 while an account's namespace is past its soft limit",
    "repfs_locks": "Files locked now: open for writing by one account",
    "repfs_retention_rules": "Folders with a retention rule",
    "repfs_retention_sweep_running": "1 while the retention sweeper deletes files past their maximum age",
    "repfs_retention_last_sweep_timestamp_seconds": "When the last retention sweep ended (unix time; 0: never)",
    "repfs_expired_files_total": "Files removed by policy since mount, by reason (retention, eviction)",
    "repfs_block_records": "Distinct blocks the filesystem holds (block records in the metadata, one per block id)",
    "repfs_repair_copies_total": "Copies written by the repairer (repair, rebalance, drain)",
    "repfs_repair_removed_copies_total": "Extra or damaged copies deleted by the repairer",
    "repfs_repair_unrecoverable_blocks_total": "Blocks the repairer found with no good copy",
    "repfs_read_repairs_total": "Copies rewritten by reads that found them missing or damaged",
    "repfs_rebalance_queued_blocks_total": "Blocks queued to move by changes of pools (add, weight, drain)",
    "repfs_drain_remaining_blocks": "Blocks a draining pool still holds",
    "repfs_drain_total_blocks": "Blocks a draining pool held when its drain began",
    "repfs_drain_done": "1 once a draining pool holds no blocks (it can be removed)",
    "repfs_scrub_running": "1 while an online scrub runs",
    "repfs_scrub_done_blocks": "Blocks the current (or last) online scrub has checked",
    "repfs_scrub_total_blocks": "Blocks the current (or last) online scrub is to check",
    "repfs_scrub_last_finished_timestamp_seconds": (
        "When a scrub (online or repfs scrub) last went through every block (unix time); "
        "when the filesystem was made, if never"
    ),
    "repfs_fuse_op_seconds": "Time of FUSE operations, by operation (its _count is the number of operations)",
    "repfs_fuse_op_errors_total": (
        "FUSE operations answered with an error, by operation and errno (negative answers are counted apart)"
    ),
    "repfs_fuse_op_negative_answers_total": (
        "FUSE operations answered that a name or attribute is not there: normal answers, not errors"
    ),
    "repfs_read_bytes_total": "Bytes read through the mount",
    "repfs_written_bytes_total": "Bytes written through the mount",
    "repfs_cache_dirty_bytes": "Bytes written and not yet stored on the pools",
    "repfs_cache_clean_bytes": "Bytes kept in the read cache",
    "repfs_cache_memory_bytes": "Bytes of the read cache held in memory only (blocks streamed to sequential readers)",
    "repfs_cache_spare_bytes": "Bytes of zeroed cache files kept for new blocks (spares)",
    "repfs_cache_limit_bytes": "Size of the block cache (--cache-size)",
    "repfs_cache_dirty_limit_bytes": "Dirty bytes past which writers wait (--max-dirty)",
    "repfs_upload_queue_blocks": "Dirty blocks waiting to be stored (upload queue depth)",
    "repfs_upload_errors_total": "Block uploads that failed and will be retried",
    "repfs_blocks_stored_total": "Blocks stored on the pools by this daemon",
    "repfs_blocks_deduplicated_total": "Blocks written that were already stored (deduplicated)",
    "repfs_blocks_fetched_total": "Blocks fetched from the pools",
    "repfs_blocks_deleted_total": "Blocks deleted by garbage collection",
    "repfs_blocks_packed_total": "Blocks stored inside a journal pack rather than as their own objects",
    "repfs_pack_frames_moved_total": "Live blocks carried out of sparse packs into new ones (compaction)",
    "repfs_packs_compacted_total": "Sparse packs left with no live block by compaction (the prune deletes them)",
    "repfs_journal_seq": "Sequence number of the last metadata change",
    "repfs_journal_stored_seq": "Last metadata change known to be stored on the pools",
    "repfs_journal_lag_changes": "Metadata changes not yet stored on the pools (journal lag)",
    "repfs_journal_queued_bytes": "Bytes of metadata changes waiting for the journal",
    "repfs_admin_requests_total": "Requests served on the admin socket",
}

# The standard metrics of prometheus_client's ProcessCollector and PlatformCollector, served
# beside repfs's own (names fixed by the Prometheus conventions, not by repfs).
STANDARD: dict[str, str] = {
    "process_cpu_seconds_total": "CPU time of the daemon, user and system (seconds)",
    "process_resident_memory_bytes": "Resident memory of the daemon",
    "process_virtual_memory_bytes": "Virtual memory of the daemon",
    "process_open_fds": "File descriptors the daemon has open",
    "process_max_fds": "The daemon's limit of open file descriptors",
    "process_start_time_seconds": "When the daemon's process started (unix time)",
    "python_info": "Always 1; labels: the Python implementation and version",
}

# (operation, errno) answers that say only that something is not there: not errors.
ROUTINE: frozenset[tuple[str, int]] = frozenset({
    ("lookup", errno.ENOENT),  # a name that is not there (normally a negative entry, not an error)
    ("getxattr", errno.ENODATA),  # an absent attribute: ls -l asks for ACLs, cp -a and rsync -X for more
    ("getxattr", errno.EOPNOTSUPP),  # an attribute of a namespace repfs does not hold (system.nfs4_acl, ...)
    ("listxattr", errno.ENODATA),
    ("removexattr", errno.ENODATA),  # removing an attribute that is not there (setfacl -b, setfattr -x)
})  # fmt: skip

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LEVELS = {"ok": 0, "warn": 1, "critical": 2}


def _base(name: str) -> str:
    return name.removesuffix("_total")


class Metrics:
    """The metrics of one daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.pool_seconds = Histogram(
            "repfs_pool_request_seconds", HELP["repfs_pool_request_seconds"], ["pool", "op"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.pool_errors = Counter(
            _base("repfs_pool_request_errors_total"), HELP["repfs_pool_request_errors_total"],
            ["pool", "op", "kind"], registry=r,
        )  # fmt: skip
        self.fuse_seconds = Histogram(
            "repfs_fuse_op_seconds", HELP["repfs_fuse_op_seconds"], ["op"], buckets=LATENCY_BUCKETS, registry=r
        )
        self._fuse_timers: dict[str, Histogram] = {}
        self.fuse_errors = Counter(
            _base("repfs_fuse_op_errors_total"), HELP["repfs_fuse_op_errors_total"], ["op", "errno"], registry=r
        )
        self.fuse_negative = Counter(
            _base("repfs_fuse_op_negative_answers_total"), HELP["repfs_fuse_op_negative_answers_total"],
            ["op", "errno"], registry=r,
        )  # fmt: skip
        for op, code in ROUTINE:  # served at 0 from the start, so that rate() and alerts see them
            self.fuse_negative.labels(op, errno.errorcode.get(code, str(code)))
        self.read_bytes = Counter(_base("repfs_read_bytes_total"), HELP["repfs_read_bytes_total"], registry=r)
        self.written_bytes = Counter(_base("repfs_written_bytes_total"), HELP["repfs_written_bytes_total"], registry=r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # the label values of the series observed per pool, to drop those of removed pools
        self._pool_series: set[tuple[str, str]] = set()
        self._pool_error_series: set[tuple[str, str, str]] = set()
        self._pools: Callable[[], Iterable[str]] | None = None

    def observe_pool(self, pool: str, op: str, seconds: float, failure: str | None) -> None:
        self.pool_seconds.labels(pool, op).observe(seconds)
        self._pool_series.add((pool, op))
        if failure is not None:
            self.pool_errors.labels(pool, op, failure).inc()
            self._pool_error_series.add((pool, op, failure))

    def observe_fuse(self, op: str, seconds: float, error: int | None, nbytes: int = 0) -> None:
        timer = self._fuse_timers.get(op)
        if timer is None:  # a label lookup costs more than the observation: once per op
            timer = self._fuse_timers[op] = self.fuse_seconds.labels(op)
        timer.observe(seconds)
        if error is not None:
            name = errno.errorcode.get(error, str(error))
            if (op, error) in ROUTINE:
                self.fuse_negative.labels(op, name).inc()
            else:
                self.fuse_errors.labels(op, name).inc()
        elif op == "read":
            self.read_bytes.inc(nbytes)
        elif op == "write":
            self.written_bytes.inc(nbytes)

    def bind(self, daemon: Daemon) -> None:
        """Read the live daemon at every scrape."""
        self.registry.register(LiveCollector(daemon))
        self._pools = lambda: daemon.layers.poolset.pool_names

    def forget_removed_pools(self) -> None:
        """Drop the observed series of pools that are no longer the filesystem's."""
        if self._pools is None:
            return
        current = set(self._pools())
        for labels in [t for t in list(self._pool_series) if t[0] not in current]:
            self.pool_seconds.remove(*labels)
            self._pool_series.discard(labels)
        for labels3 in [t for t in list(self._pool_error_series) if t[0] not in current]:
            self.pool_errors.remove(*labels3)
            self._pool_error_series.discard(labels3)

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, str, str | None]:
        """(body, content type, content encoding or None) of one scrape: OpenMetrics when
        `accept` asks for it, else the Prometheus text format; gzip when accepted."""
        self.forget_removed_pools()
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        if gzip_accepted(accept_encoding):
            return gzip.compress(body), content_type, "gzip"
        return body, content_type, None


class LiveCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def _gauge(self, name: str, labels: list[str] | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, HELP[name], labels=labels)

    def _counter(self, name: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(_base(name), HELP[name], value=value)

    def collect(self) -> Iterator[Metric]:
        d = self.d
        layers = d.layers
        st = status.take(layers)
        info = GaugeMetricFamily("repfs_info", HELP["repfs_info"], labels=["version", "fs_uuid"])
        info.add_metric([__version__, st.fs_uuid], 1)
        yield info
        started = self._gauge("repfs_start_time_seconds")
        started.add_metric([], d.started)
        yield started
        yield from self._pools(st)
        yield from self._gauges(
            ("repfs_accounts", st.accounts.total),
            ("repfs_accounts_refused", st.accounts.refused),
            ("repfs_shares", st.sharing.shares),
            ("repfs_locks", st.sharing.locks),
            ("repfs_replica_deficit_blocks", st.repair.deficit),
            ("repfs_block_records", count_entries(layers.meta, "blocks")),
        )
        rep = st.repair
        yield self._counter("repfs_repair_copies_total", rep.repaired)
        yield self._counter("repfs_repair_removed_copies_total", rep.removed)
        yield self._counter("repfs_repair_unrecoverable_blocks_total", rep.unrecoverable)
        yield self._counter("repfs_read_repairs_total", rep.read_repairs)
        yield self._counter("repfs_rebalance_queued_blocks_total", rep.rebalance["queued_total"])
        remaining = self._gauge("repfs_drain_remaining_blocks", ["pool"])
        total = self._gauge("repfs_drain_total_blocks", ["pool"])
        done = self._gauge("repfs_drain_done", ["pool"])
        for name, drain in rep.drains.items():
            if drain["remaining"] is not None:
                remaining.add_metric([name], drain["remaining"])
                total.add_metric([name], drain["total"] or 0)
            done.add_metric([name], int(drain["done"]))
        yield from (remaining, total, done)
        user_gauges = [(name, self._gauge(name, ["account"])) for name in (
            "repfs_user_bytes", "repfs_user_files", "repfs_user_quota_bytes", "repfs_user_quota_files",
            "repfs_user_over_soft_limit")]  # fmt: skip
        for user in st.users:
            values = (user.bytes, user.files, user.max_bytes, user.max_files, int(user.over_soft))
            for (_, gauge), value in zip(user_gauges, values, strict=True):
                gauge.add_metric([user.name], value)
        yield from (gauge for _, gauge in user_gauges)
        ex = st.expiry
        yield from self._gauges(
            ("repfs_retention_rules", ex.rules),
            ("repfs_retention_sweep_running", int(ex.sweep_running)),
            ("repfs_retention_last_sweep_timestamp_seconds", ex.sweep_finished),
        )
        expired = CounterMetricFamily(
            _base("repfs_expired_files_total"), HELP["repfs_expired_files_total"], labels=["reason"]
        )
        for reason, n in ex.removed.items():
            expired.add_metric([reason], n)
        yield expired
        scrub = d.scrub
        yield from self._gauges(
            ("repfs_scrub_running", int(scrub.running)),
            ("repfs_scrub_done_blocks", scrub.done),
            ("repfs_scrub_total_blocks", scrub.total),
            ("repfs_scrub_last_finished_timestamp_seconds", st.scrub_finished_ns / 1e9),
        )
        c = st.cache
        yield from self._gauges(
            ("repfs_cache_dirty_bytes", c.dirty_bytes),
            ("repfs_cache_clean_bytes", c.clean_bytes),
            ("repfs_cache_memory_bytes", c.memory_bytes),
            ("repfs_cache_spare_bytes", c.spare_bytes),
            ("repfs_cache_limit_bytes", c.limit_bytes),
            ("repfs_cache_dirty_limit_bytes", c.dirty_limit_bytes),
            ("repfs_upload_queue_blocks", c.upload_queue),
        )
        yield self._counter("repfs_upload_errors_total", c.upload_errors)
        for name, key in (
            ("repfs_blocks_stored_total", "stored"),
            ("repfs_blocks_deduplicated_total", "deduplicated"),
            ("repfs_blocks_fetched_total", "fetched"),
            ("repfs_blocks_deleted_total", "deleted"),
            ("repfs_blocks_packed_total", "packed"),
            ("repfs_pack_frames_moved_total", "frames_moved"),
            ("repfs_packs_compacted_total", "packs_compacted"),
        ):
            yield self._counter(name, st.blocks.get(key, 0))
        j = st.journal
        yield from self._gauges(
            ("repfs_journal_seq", j.seq),
            ("repfs_journal_stored_seq", j.stored),
            ("repfs_journal_lag_changes", j.lag),
            ("repfs_journal_queued_bytes", j.queued_bytes),
        )
        yield self._counter("repfs_admin_requests_total", d.admin_requests())

    def _gauges(self, *values: tuple[str, float]) -> Iterator[Metric]:
        for name, value in values:
            g = self._gauge(name)
            g.add_metric([], value)
            yield g

    def _pools(self, st: status.Status) -> Iterator[Metric]:
        g = {
            n: self._gauge(n, ["pool"])
            for n in (
                "repfs_pool_used_bytes", "repfs_pool_total_bytes", "repfs_pool_free_bytes", "repfs_pool_usage_ratio",
                "repfs_pool_warn_ratio", "repfs_pool_critical_ratio", "repfs_pool_level", "repfs_pool_full",
                "repfs_pool_weight", "repfs_pool_usage_measured_timestamp_seconds",
            )
        }  # fmt: skip
        state = self._gauge("repfs_pool_state", ["pool", "state"])
        for p in st.pools:
            if p.used is not None:
                g["repfs_pool_used_bytes"].add_metric([p.name], p.used)
                g["repfs_pool_free_bytes"].add_metric([p.name], p.free or 0)
            if p.total is not None:
                g["repfs_pool_total_bytes"].add_metric([p.name], p.total)
            if p.usage_ratio is not None:
                g["repfs_pool_usage_ratio"].add_metric([p.name], p.usage_ratio)
            if p.level in LEVELS:
                g["repfs_pool_level"].add_metric([p.name], LEVELS[p.level])
            g["repfs_pool_warn_ratio"].add_metric([p.name], p.warn_threshold)
            g["repfs_pool_critical_ratio"].add_metric([p.name], p.critical_threshold)
            g["repfs_pool_full"].add_metric([p.name], int(p.full))
            g["repfs_pool_weight"].add_metric([p.name], p.weight)
            if p.usage_measured is not None:
                g["repfs_pool_usage_measured_timestamp_seconds"].add_metric([p.name], p.usage_measured)
            for s in PoolState:
                state.add_metric([p.name, s.value], int(s.value == p.state))
        yield from g.values()
        yield state
