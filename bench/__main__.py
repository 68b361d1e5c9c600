"""repfs side by side with its peers: `python -m bench [--quick]` (as root). See bench/README.md.

It installs what is missing, starts SeaweedFS on 127.0.0.1, measures the raw S3
ceilings, then takes each system in turn through the same workloads (mount, run,
unmount, clean up), prints one table and writes bench/results/<UTC time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import install
from bench.ceilings import CeilingSizes
from bench.ceilings import measure as measure_ceilings
from bench.plan import GiB, Sizes, select, steps
from bench.proc import BenchError, run
from bench.report import machine_info, render, targets
from bench.runner import Progress, Runner
from bench.systems import SYSTEMS, Env, by_name

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROFILED_STEPS = ("seq_write", "packets", "parallel", "seq_read", "md_create", "md_stat", "md_delete")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole run in under 3 minutes")
    ap.add_argument("--systems", default=",".join(s.name for s in SYSTEMS),
                    help="comma-separated systems to run, in order [default: all]")  # fmt: skip
    ap.add_argument("--workloads", default="",
                    help="comma-separated workloads to run (e.g. seq_read,packets), with the steps they "
                         "need first [default: all]")  # fmt: skip
    ap.add_argument("--s3-servers", type=int, choices=(1, 3), default=1,
                    help="1: repfs's 3 pools are 3 buckets on one SeaweedFS server, shared with the peers; "
                         "3: one server per repfs pool (peers use the first) [default: 1]")  # fmt: skip
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, py-spy on the repfs daemons of --systems (data, metadata)")  # fmt: skip
    ap.add_argument("--profile-only", action="store_true", help="only the profile, no table")
    ap.add_argument("--repfs-option", action="append", default=[], metavar="OPT",
                    help="one more option for every repfs mount, e.g. --repfs-option=--pack-max=1M")  # fmt: skip
    ap.add_argument("--dir", help="where the scratch folder goes [default: the system's temp dir]")
    ap.add_argument("--out", type=Path, help=f"JSON file [default: {RESULTS_DIR}/<UTC time>.json]")
    ap.add_argument("--no-install", action="store_true", help="do not install missing tools")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return ap.parse_args(argv)


def stdlib_copy(dest: Path, subset: tuple[str, ...]) -> Path:
    """A copy of the Python standard library (no site-packages, no __pycache__) on local disk."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dest.mkdir(parents=True)
    excludes = ["--exclude=site-packages", "--exclude=dist-packages", "--exclude=__pycache__"]
    sources = [str(stdlib / d) for d in subset] if subset else [f"{stdlib}/"]
    run(["rsync", "-a", *excludes, *sources, f"{dest}/"], timeout=300)
    return dest


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.small() if args.quick else Sizes.full()
    classes = by_name([s for s in args.systems.split(",") if s])
    profiling = args.profile or args.profile_only
    profiled = [c for c in classes if c.name in ("repfs-local", "repfs-s3")] if profiling else []
    if args.profile_only:
        args.profile = True
        classes = []
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    progress = Progress(len(classes))
    if os.geteuid() != 0:
        print("bench: not root: the page cache cannot be dropped and tools cannot be installed", file=sys.stderr)
    if not args.no_install:
        try:
            install.ensure(profile=args.profile, say=progress.say)
        except BenchError as exc:
            print(f"bench: cannot install what is needed: {exc}", file=sys.stderr)
            return 1

    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    seed = f"repfs-bench-{started.isoformat()}"
    work = Path(tempfile.mkdtemp(prefix="repfs-bench-", dir=args.dir))
    need_s3 = any(c.needs_s3 for c in [*classes, *profiled])
    layout = (
        "no S3 system"
        if not need_s3
        else "S3: 1 SeaweedFS server; repfs's 3 pools are 3 buckets on it; each peer has 1 bucket on it"
        if args.s3_servers == 1
        else "S3: 3 SeaweedFS servers, one repfs pool (bucket) on each; each peer has 1 bucket on the first"
    )
    results: dict[str, Any] = {}
    ceilings: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    interrupted = ""
    profile_dir = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}-profile"
    try:
        from bench.servers import S3Site  # imports tests.seaweed: only when it is needed

        site = S3Site(work / "s3", args.s3_servers) if need_s3 else None
        with contextlib.ExitStack() as stack:
            progress.say("copying the Python standard library for rsync")
            src = stdlib_copy(work / "stdlib", sizes.rsync_subset)
            if site is not None:
                progress.say(f"starting SeaweedFS ({args.s3_servers} server{'s' * (args.s3_servers > 1)})")
                stack.enter_context(site)
            env = Env(work, site, tuple(args.repfs_option))
            plan = select(steps(sizes, seed, str(src)), [w for w in args.workloads.split(",") if w])
            if site is not None and classes:
                progress.say("S3 ceilings: aggregate PUT/GET, small PUTs")
                try:
                    ceilings = measure_ceilings(
                        site, 3, CeilingSizes(total_bytes=sizes.ceiling_bytes, small_count=sizes.ceiling_small)
                    )
                except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
                    ceilings = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            runner = Runner(progress, progress.t0 + sizes.budget_s, (3 if sizes.quick else 10) * GiB)
            for cls in classes:
                results[cls.name] = runner.bench(cls(env), plan)
            if profiled:
                from bench.profile import profile

                profile_dir.mkdir(parents=True, exist_ok=True)
                chosen = [s for s in plan if s.key in PROFILED_STEPS]
                for cls in profiled:
                    try:
                        profiles[cls.name] = profile(cls(env), chosen, profile_dir, progress)
                    except BenchError as exc:
                        profiles[cls.name] = {"error": {"error": str(exc)}}
    except KeyboardInterrupt as exc:
        interrupted = str(exc) or "Ctrl-C"
        progress.say(f"interrupted ({interrupted}): everything started was stopped")
    finally:
        if args.keep:
            progress.say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    machine = machine_info()
    ts = targets(results, ceilings) if results else []
    text = render(sizes, machine, layout, results, ceilings, ts) if results else ""
    out = args.out or RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if sizes.quick else ''}.json"
    doc = {
        "benchmark": "bench (repfs vs peers)",
        "started": started.isoformat(),
        "seconds": progress.elapsed(),
        "quick": sizes.quick,
        "interrupted": interrupted or None,
        "layout": layout,
        "sizes": {k: v for k, v in vars(sizes).items()},
        "machine": machine,
        "load_average": {"start": load_start, "end": os.getloadavg()},  # others' work on the machine skews figures
        "ceilings": ceilings,
        "systems": results,
        "targets": [t.as_dict() for t in ts],
        "profiles": profiles,
        "table": text,
    }
    if results or profiles:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if text:
        print()
        print(text)
    if profiles:
        from bench.profile import render as render_profiles

        ptext = render_profiles(profiles)
        if profile_dir.exists():
            (profile_dir / "hot-spots.txt").write_text(ptext + "\n")
        print()
        print(ptext)
    where = f"results: {out}" if results or profiles else "no results"
    print(f"\nrun took {time.strftime('%M:%S', time.gmtime(progress.elapsed()))}; {where}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
