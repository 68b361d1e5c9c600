"""The printed table, repfs's ratios and targets, the machine, and the JSON file."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import METRIC, METRICS, MiB, Sizes
from bench.proc import tool, version_of
from bench.systems import PEERS, REPLICAS

REPO = Path(__file__).resolve().parent.parent
Results = dict[str, dict[str, Any]]  # system name -> {"title", "cells", ...}


# --- the machine -----------------------------------------------------------------------------


def _tool_version(name: str, *args: str) -> str:
    try:
        return version_of([tool(name), *args])
    except Exception:  # noqa: BLE001 - not installed: no version
        return ""


def machine_info() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M)
    cpu = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else ""
    versions: dict[str, str] = {}
    for dist in ("repfs", "pyfuse3", "trio", "lmdb", "zstandard", "cryptography", "blake3", "minio"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    versions |= {
        "seaweedfs": _tool_version("weed", "version"),
        "juicefs": _tool_version("juicefs", "version"),
        "rclone": _tool_version("rclone", "version"),
        "s3fs": _tool_version("s3fs", "--version"),
        "fio": _tool_version("fio", "--version"),
        "rsync": _tool_version("rsync", "--version"),
        "fusermount3": _tool_version("fusermount3", "-V"),
    }
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "repfs"], capture_output=True, text=True, timeout=20
        )
        if head.returncode == 0:
            git = {"commit": head.stdout.strip(), "repfs_dirty": bool(dirty.stdout.strip())}
    return {
        "cores": os.cpu_count(),
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git": git,
    }


# --- cells -----------------------------------------------------------------------------------


def value(results: Results, system: str, metric: str) -> float | None:
    cell = results.get(system, {}).get("cells", {}).get(metric, {})
    v = cell.get("value")
    return float(v) if isinstance(v, int | float) else None


def show(cell: dict[str, Any] | None, digits: int) -> str:
    if not cell:
        return "-"
    if "value" in cell:
        v = cell["value"]
        if isinstance(v, int | float):
            return f"{v:,.{digits}f}"
        return str(v)
    if "skipped" in cell:
        return f"skipped: {cell['skipped']}"
    return f"error: {cell.get('error', '?')}"


def best_peer(results: Results, metric: str) -> tuple[str, float] | None:
    """The best S3-backed peer for a metric (highest, or lowest when lower is better)."""
    m = METRIC[metric]
    vals = [(p, v) for p in PEERS if (v := value(results, p, metric)) is not None and v > 0]
    if not vals:
        return None
    return (max if m.higher_better else min)(vals, key=lambda pv: pv[1])


def ratio(a: float | None, b: float | None, higher_better: bool) -> float | None:
    """How many times better a is than b (>1: a is better)."""
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return a / b if higher_better else b / a


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    measured: float | None  # the ratio reached
    goal: float
    basis: str

    @property
    def status(self) -> str:
        if self.measured is None:
            return "n/a"
        return "ok" if self.measured >= self.goal else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.label, "ratio": self.measured, "goal": self.goal, "basis": self.basis,
                "status": self.status}  # fmt: skip


def targets(results: Results, ceilings: dict[str, Any]) -> list[Target]:
    def v(system: str, metric: str) -> float | None:
        return value(results, system, metric)

    def r(a: str, b: str, metric: str) -> float | None:
        return ratio(v(a, metric), v(b, metric), METRIC[metric].higher_better)

    agg = ceilings.get("aggregate", {})
    small = ceilings.get("small_put", {})
    put_rate = agg.get("put_MBps")
    small_rate = small.get("single_stream_per_s")
    out = [
        Target("packets: repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", "packets"), 1.5, "files/s ratio"),
        Target("packets: repfs-s3 vs raw 64 KiB PUT, 1 stream",
               ratio(v("repfs-s3", "packets"), small_rate, True), 0.8, "files/s ÷ PUTs/s"),
        Target("packets: repfs-s3 vs raw 64 KiB PUT pairs (2 buckets), 1 pair at a time",
               ratio(v("repfs-s3", "packets"), small.get("pair_per_s"), True), 0.8,
               "files/s ÷ pairs/s (reference: the bound with 2 copies)"),
        Target("packets: repfs-local vs passthrough", r("repfs-local", "passthrough", "packets"), 0.6, "files/s ratio"),
        Target("seq-write: repfs-s3 × replicas vs raw aggregate PUT",
               ratio((v("repfs-s3", "seq_write") or 0) * REPLICAS or None, put_rate, True), 0.7,
               f"MB/s × {REPLICAS} ÷ raw PUT MB/s (8 streams)"),
        Target("seq-write: repfs-local vs passthrough", r("repfs-local", "passthrough", "seq_write"), 0.5, "ratio"),
        Target("seq-read (cold): repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", "seq_read"), 1.0, "MB/s ratio"),
        Target("packet-read (cold): repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", "packet_read"), 1.0, "ratio"),
        Target("parallel: repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", "parallel"), 1.0, "MB/s ratio"),
    ]  # fmt: skip
    for metric in ("md_create", "md_stat", "md_delete", "rsync"):
        name = METRIC[metric].label.replace("metadata: ", "").split(" (")[0].split(" -a")[0]
        out.append(Target(f"{name}: repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", metric), 2.0, "ratio"))
        out.append(Target(f"{name}: repfs-local vs passthrough", r("repfs-local", "passthrough", metric), 0.8, "ratio"))
    out.append(Target("4k randread: repfs-s3 vs JuiceFS", r("repfs-s3", "juicefs", "randread"), 1.0, "IOPS ratio"))
    for system in ("repfs-local", "repfs-s3"):
        cpu, peer = v(system, "cpu_per_gib"), v("juicefs", "cpu_per_gib")
        out.append(Target(f"CPU per GiB written ≤ 2× JuiceFS: {system}", 2 * peer / cpu if cpu and peer else None, 1.0,
                          "2 × JuiceFS s/GiB ÷ s/GiB"))  # fmt: skip
    for system in ("repfs-local", "repfs-s3"):
        rss = v(system, "peak_rss")
        out.append(Target(f"peak RSS ≤ 300 MiB: {system}", 300 / rss if rss else None, 1.0, "300 MiB ÷ peak RSS"))
    return out


# --- the table -------------------------------------------------------------------------------


def _grid(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def clip(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: Results) -> str:
    systems = list(results)
    head = ["workload", "unit", *systems, "repfs-s3÷best peer", "repfs-local÷passthru"]
    rows = [head]
    for m in METRICS:
        row = [m.label, m.unit]
        for s in systems:
            row.append(clip(show(results[s]["cells"].get(m.key), m.digits)))
        if m.unit:
            bp = best_peer(results, m.key)
            rs = ratio(value(results, "repfs-s3", m.key), bp[1] if bp else None, m.higher_better)
            rl = ratio(value(results, "repfs-local", m.key), value(results, "passthrough", m.key), m.higher_better)
            row.append(f"{rs:.2f}× ({bp[0]})" if rs is not None and bp else "-")
            row.append(f"{rl:.2f}×" if rl is not None else "-")
        else:
            row += ["", ""]
        rows.append(row)
    return _grid(rows, right=set(range(2, len(head))))


def ceilings_table(ceilings: dict[str, Any]) -> str:
    if "error" in ceilings:
        return f"S3 ceilings: error: {ceilings['error']}"
    if not ceilings:
        return "S3 ceilings: not measured (no S3 system in this run)"
    a, s, w = ceilings.get("aggregate", {}), ceilings.get("small_put", {}), ceilings.get("aggregate_wide", {})
    streams = f"{a.get('streams')} streams × {a.get('object_bytes', 0) // MiB} MiB"
    rows = [
        ["ceiling", "value"],
        [f"raw S3 PUT, {streams}", f"{a.get('put_MBps', 0):,.1f} MB/s"],
        [f"raw S3 GET, {streams}", f"{a.get('get_MBps', 0):,.1f} MB/s"],
        [f"raw S3 PUT, {w.get('streams')} streams × 4 MiB (reference)", f"{w.get('put_MBps', 0):,.1f} MB/s"],
        ["raw S3 PUT 64 KiB, 1 stream", f"{s.get('single_stream_per_s', 0):,.0f} PUT/s"],
        [f"raw S3 PUT 64 KiB, {s.get('parallel_streams')} streams", f"{s.get('parallel_per_s', 0):,.0f} PUT/s"],
        ["raw S3 PUT 64 KiB pairs (2 buckets at once), 1 pair at a time", f"{s.get('pair_per_s', 0):,.0f} pairs/s"],
    ]  # fmt: skip
    return _grid(rows, right={1})


def targets_table(ts: list[Target]) -> str:
    rows = [["target", "ratio", "goal", "status"]]
    for t in ts:
        rows.append([t.label, f"{t.measured:.2f}×" if t.measured is not None else "-", f"≥ {t.goal:g}×", t.status])
    return _grid(rows, right={1, 2})


def header(sizes: Sizes, machine: dict[str, Any], layout: str) -> str:
    mem = (machine.get("memory_bytes") or 0) / (1 << 30)
    kind = "quick" if sizes.quick else "full"
    return (
        f"repfs vs peers ({kind} run): {machine['cores']} cores, {mem:.0f} GiB, Python {machine['python']}, "
        f"{layout}\n"
        f"seq {sizes.seq_bytes // MiB} MiB · {sizes.packets} packets · parallel {sizes.par_files}×"
        f"{sizes.par_bytes / 1e6:g} MB by {sizes.writers} · metadata {sizes.md_files} files in {sizes.md_dirs} dirs · "
        f"randread {sizes.rand_bytes // MiB} MiB for {sizes.rand_runtime:g}s ({sizes.rand_jobs} jobs)"
    )


def render(sizes: Sizes, machine: dict[str, Any], layout: str, results: Results, ceilings: dict[str, Any],
           ts: list[Target]) -> str:  # fmt: skip
    parts = [header(sizes, machine, layout), "", table(results), "", ceilings_table(ceilings), "", targets_table(ts)]
    return "\n".join(parts)
