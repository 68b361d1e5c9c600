"""What is measured: the sizes (full or --quick), the metrics (the table's rows) and the
steps each system goes through, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_better: bool = True
    digits: int = 0


METRICS: list[Metric] = [
    Metric("seq_write", "seq-write + fsync", "MB/s", digits=1),
    Metric("seq_write_z", "seq-write compressible + fsync", "MB/s", digits=1),
    Metric("seq_read", "seq-read, cold caches", "MB/s", digits=1),
    Metric("packets", "packets 64 KiB, fsync each", "files/s"),
    Metric("packets_par", "packets 64 KiB, fsync each, 8 writers", "files/s"),
    Metric("packet_read", "packet-read 64 KiB, cold", "files/s"),
    Metric("parallel", "parallel, 8 writers", "MB/s", digits=1),
    Metric("md_create", "metadata: create", "ops/s"),
    Metric("md_stat", "metadata: stat (cold)", "ops/s"),
    Metric("md_delete", "metadata: delete", "ops/s"),
    Metric("rsync", "rsync -a stdlib", "s", higher_better=False, digits=1),
    Metric("rsync_identical", "  diff -r identical", ""),
    Metric("randread", "4k randread (fio)", "IOPS"),
    Metric("peak_rss", "daemon peak RSS", "MiB", higher_better=False),
    Metric("cpu_per_gib", "daemon CPU per GiB written", "s/GiB", higher_better=False, digits=1),
]
METRIC = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Sizes:
    quick: bool
    seq_bytes: int
    packets: int
    packet_bytes: int
    par_files: int
    par_bytes: int
    writers: int
    md_files: int
    md_dirs: int
    rsync_subset: tuple[str, ...]  # stdlib subfolders to copy; () = the whole stdlib
    rand_bytes: int
    rand_runtime: float
    rand_jobs: int
    ceiling_bytes: int
    ceiling_small: int
    budget_s: float  # the whole run; steps past it are skipped

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            quick=False, seq_bytes=1 * GiB, packets=2000, packet_bytes=64 << 10, par_files=40,
            par_bytes=25_000_000, writers=8, md_files=10_000, md_dirs=100, rsync_subset=(),
            rand_bytes=256 * MiB, rand_runtime=15.0, rand_jobs=4, ceiling_bytes=1 * GiB, ceiling_small=500,
            budget_s=28 * 60,
        )  # fmt: skip

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            quick=True, seq_bytes=128 * MiB, packets=200, packet_bytes=64 << 10, par_files=8,
            par_bytes=8_000_000, writers=8, md_files=500, md_dirs=10, rsync_subset=("json", "email", "asyncio"),
            rand_bytes=64 * MiB, rand_runtime=3.0, rand_jobs=4, ceiling_bytes=128 * MiB, ceiling_small=200,
            budget_s=170,
        )  # fmt: skip


@dataclass(frozen=True)
class Step:
    key: str  # the metric it fills (or a name for a preparation step)
    workload: str  # a function in bench.workloads
    args: dict[str, Any]  # "{root}" in a string is the system's root folder
    timeout: float
    before: str = ""  # "cold": remount with fresh caches, then drop the page cache; "drop": page cache only
    writes: bool = False  # settle afterwards (wait for background uploads)
    measured: bool = True  # False: preparation, no row in the table
    extra: dict[str, Any] = field(default_factory=dict)


def steps(sz: Sizes, seed: str, rsync_src: str) -> list[Step]:
    q = sz.quick
    md = {"folder": "{root}/meta", "files": sz.md_files, "dirs": sz.md_dirs}
    return [
        Step("seq_write", "seq_write", {"path": "{root}/big.bin", "size": sz.seq_bytes, "seed": seed},
             60 if q else 240, writes=True),
        Step("seq_write_z", "seq_write_compressible", {"path": "{root}/text.bin", "size": sz.seq_bytes,
                                                       "seed": seed + "/text"}, 60 if q else 240, writes=True),
        Step("packets", "packets", {"folder": "{root}/packets", "count": sz.packets, "size": sz.packet_bytes,
                                    "seed": seed + "/packets"}, 40 if q else 180, writes=True),
        Step("packets_par", "packets_parallel", {"folder": "{root}/packets-par", "count": sz.packets,
                                                 "size": sz.packet_bytes, "writers": sz.writers,
                                                 "seed": seed + "/packets-par"}, 40 if q else 180, writes=True),
        Step("parallel", "parallel", {"folder": "{root}/parallel", "files": sz.par_files, "size": sz.par_bytes,
                                      "writers": sz.writers, "seed": seed + "/parallel"}, 40 if q else 180,
             writes=True),
        Step("md_create", "md_create", md, 40 if q else 180, writes=True),
        Step("md_stat", "md_stat", md, 30 if q else 120, before="drop"),
        Step("md_delete", "md_delete", md, 40 if q else 180, writes=True),
        Step("rsync", "rsync_in", {"src": rsync_src, "dst": "{root}/stdlib", "timeout": 60 if q else 300},
             60 if q else 300, writes=True),
        Step("make_rand", "make_file", {"path": "{root}/rand.bin", "size": sz.rand_bytes, "seed": seed + "/rand"},
             40 if q else 120, writes=True, measured=False),
        Step("seq_read", "seq_read", {"path": "{root}/big.bin", "size": sz.seq_bytes, "seed": seed},
             60 if q else 240, before="cold"),
        Step("packet_read", "packet_read", {"folder": "{root}/packets", "count": sz.packets, "size": sz.packet_bytes,
                                            "seed": seed + "/packets"}, 40 if q else 180, before="cold"),
        Step("randread", "randread", {"path": "{root}/rand.bin", "size": sz.rand_bytes, "runtime": sz.rand_runtime,
                                      "jobs": sz.rand_jobs}, sz.rand_runtime * 2 + 60),
    ]  # fmt: skip


# What a workload reads was written by an earlier step.
NEEDS = {"seq_read": "seq_write", "randread": "make_rand", "packet_read": "packets"}


def select(plan: list[Step], wanted: list[str]) -> list[Step]:
    """The steps of `wanted` workloads (all if empty) and those they need, in plan order."""
    if not wanted:
        return plan
    known = {st.key for st in plan}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    keep = set(wanted) | {NEEDS[w] for w in wanted if w in NEEDS}
    return [st for st in plan if st.key in keep]
