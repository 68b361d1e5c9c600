"""Metadata speed with and without the account policies: create, stat (cold caches),
open+close and delete of files in an account's namespace on repfs-local, with nothing
set ("none"), with the folder above them shared with another account ("shared": every
stat computes the ACL the kernel is shown), and with a quota on the account ("quota":
every create and write is counted and checked). Rounds take the sides in turns, medians
side by side. As root:

    .venv/bin/python -m bench.policy [--files 5000] [--rounds 3]

Host users for the two accounts are made (useradd) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.systems import Env, RepfsLocal

ADMIN = [sys.executable, "-m", "repfs.admin.cli"]


def admin(fs_dir: Path, *args: str) -> str:
    res = subprocess.run([*ADMIN, "-d", str(fs_dir), *args], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"repfs-admin {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def paths(root: Path, files: int) -> list[Path]:
    return [root / f"d{i % 50:02d}" / f"f{i:06d}" for i in range(files)]


def create(root: Path, files: int) -> float:
    root.mkdir()
    for d in range(50):
        (root / f"d{d:02d}").mkdir()
    t0 = time.perf_counter()
    for p in paths(root, files):
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return files / (time.perf_counter() - t0)


def stat_all(root: Path, files: int) -> float:
    t0 = time.perf_counter()
    for p in paths(root, files):
        os.stat(p)
    return files / (time.perf_counter() - t0)


def open_all(root: Path, files: int) -> float:
    t0 = time.perf_counter()
    for p in paths(root, files):
        os.close(os.open(p, os.O_RDONLY))
    return files / (time.perf_counter() - t0)


def delete_all(root: Path, files: int) -> float:
    t0 = time.perf_counter()
    for p in paths(root, files):
        os.unlink(p)
    return files / (time.perf_counter() - t0)


SIDES = ("none", "shared", "quota")
WORKLOADS = ("create", "stat", "open", "delete")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it makes host users and drops the page cache")
    work = Path(tempfile.mkdtemp(prefix="repfs-bench-policy-"))
    system = RepfsLocal(Env(work, None))
    owner, grantee = f"bo{secrets.token_hex(3)}", f"bg{secrets.token_hex(3)}"
    seen: dict[str, dict[str, list[float]]] = {side: {} for side in SIDES}
    try:
        system.setup()
        system.mount()
        for name in (owner, grantee):
            admin(system.fs_dir, "users", "add", name, "--email", f"{name}@example.org", "--create-system-user")
        folder = system.mnt / owner / "work"
        folder.mkdir()
        for i in range(args.rounds):
            for side in SIDES[i % 3 :] + SIDES[: i % 3]:
                if side == "shared":  # the folder above the files, shared while they are made and read
                    admin(system.fs_dir, "shares", "add", str(folder), grantee, "--role", "reader")
                if side == "quota":  # a limit far above what the run makes: every change is checked
                    admin(system.fs_dir, "users", "set", owner, "--quota", "1T", "--quota-files", "100000000")
                root = folder / f"{side}{i}"
                figures = seen[side]
                figures.setdefault("create", []).append(create(root, args.files))
                system.cold_remount()
                drop_caches()
                figures.setdefault("stat", []).append(stat_all(root, args.files))
                figures.setdefault("open", []).append(open_all(root, args.files))
                figures.setdefault("delete", []).append(delete_all(root, args.files))
                if side == "shared":
                    admin(system.fs_dir, "shares", "remove", str(folder), grantee)
                if side == "quota":
                    admin(system.fs_dir, "users", "set", owner, "--quota", "0", "--quota-files", "0")
    finally:
        system.cleanup()
        for name in (owner, grantee):
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)
    print(f"repfs-local, {args.files} files in 50 folders, median of {args.rounds} (ops/s)")
    print(f"{'workload':10} {'none':>10} {'shared':>10} {'quota':>10} {'shared/none':>12} {'quota/none':>11}")
    summary = {}
    for workload in WORKLOADS:
        none, shared, quota = (statistics.median(seen[side][workload]) for side in SIDES)
        summary[workload] = {"none": none, "shared": shared, "quota": quota}
        print(f"{workload:10} {none:10.0f} {shared:10.0f} {quota:10.0f} {shared / none:12.2f} {quota / none:11.2f}")
    out = Path(__file__).resolve().parent / "results" / f"policy-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"files": args.files, "rounds": args.rounds, "runs": seen, "median": summary}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
