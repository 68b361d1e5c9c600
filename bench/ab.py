"""Interleaved A/B: the same bench steps on two checkouts, taken in turns, medians side
by side. For a change that must not slow repfs down, on a machine whose speed drifts:
alternating the runs spreads the drift over both sides.

    .venv/bin/python -m bench.ab --before ../wt-old --after . --rounds 3 \\
        --systems repfs-local --workloads md_create,md_stat,md_delete,rsync

Each checkout runs its own `bench` with its own virtualenv (`CHECKOUT/.venv`). The runs'
JSON files and a summary go to bench/results/ab-<UTC time>/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def run_once(checkout: Path, out: Path, systems: str, workloads: str, quick: bool) -> dict[str, Any]:
    cmd = [str(checkout / ".venv" / "bin" / "python"), "-m", "bench", "--no-install", "--systems", systems,
           "--workloads", workloads, "--out", str(out)] + (["--quick"] if quick else [])  # fmt: skip
    subprocess.run(cmd, cwd=checkout, check=True, stdin=subprocess.DEVNULL, timeout=3600)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def values(run: dict[str, Any]) -> dict[tuple[str, str], float]:
    out = {}
    for system, info in run["systems"].items():
        for workload, cell in info.get("cells", {}).items():
            if isinstance(cell, dict) and isinstance(cell.get("value"), int | float):
                out[(system, workload)] = float(cell["value"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--systems", default="repfs-local")
    ap.add_argument("--workloads", default="md_create,md_stat,md_delete,rsync")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    folder = RESULTS / f"ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    folder.mkdir(parents=True)
    seen: dict[str, list[dict[tuple[str, str], float]]] = {"before": [], "after": []}
    commits: dict[str, str] = {}
    for i in range(args.rounds):
        for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
            checkout = getattr(args, side).resolve()
            run = run_once(checkout, folder / f"{side}-{i}.json", args.systems, args.workloads, args.quick)
            commits[side] = run["machine"]["git"]["commit"]
            seen[side].append(values(run))
    keys = sorted({k for runs in seen.values() for r in runs for k in r})
    rows = []
    for key in keys:
        before = statistics.median(r[key] for r in seen["before"] if key in r)
        after = statistics.median(r[key] for r in seen["after"] if key in r)
        rows.append({"system": key[0], "workload": key[1], "before": before, "after": after,
                     "ratio": after / before if before else None})  # fmt: skip
    summary = {"commits": commits, "rounds": args.rounds, "quick": args.quick, "rows": rows}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"before {commits.get('before', '?')[:10]}  after {commits.get('after', '?')[:10]}  "
          f"(median of {args.rounds}; rsync: seconds, lower is better; the rest: per second)")  # fmt: skip
    print(f"{'system':<12} {'workload':<12} {'before':>10} {'after':>10} {'after/before':>13}")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['system']:<12} {r['workload']:<12} {r['before']:>10.1f} {r['after']:>10.1f} {ratio:>13}")
    print(f"runs and summary: {folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
