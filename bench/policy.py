"""Metadata speed with and without the account policies: create, stat (cold caches),
open+close, delete and rsync -a of files in an account's namespace on repfs-local, with
nothing set ("none"), with the folder above them shared with another account ("shared":
every stat computes the ACL the kernel is shown), with a quota on the account ("quota":
every create and write is counted and checked), and with a retention rule on the folder
and an eviction size on the account ("retention": every write checks the eviction size,
the sweeper runs). Rounds take the sides in turns, medians side by side. As root:

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


def rsync_in(src: Path, root: Path) -> float:
    """Files per second of `rsync -a` of a tree of small files into the namespace."""
    count = sum(1 for _ in src.rglob("*"))
    t0 = time.perf_counter()
    subprocess.run(["rsync", "-a", f"{src}/", f"{root}/rsync/"], check=True, timeout=600)
    return count / (time.perf_counter() - t0)


def source_tree(where: Path, files: int) -> Path:
    """`files` files of 4 KiB in 20 folders, with old mtimes (as a backup would bring)."""
    for i in range(files):
        p = where / f"s{i % 20:02d}" / f"g{i:05d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(4096))
        os.utime(p, (978307200, 978307200))
    return where


def delete_all(root: Path, files: int) -> float:
    t0 = time.perf_counter()
    for p in paths(root, files):
        os.unlink(p)
    return files / (time.perf_counter() - t0)


SIDES = ("none", "shared", "quota", "retention")
WORKLOADS = ("create", "stat", "open", "delete", "rsync")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rsync-files", type=int, default=1000)
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
        src = source_tree(work / "src", args.rsync_files)
        n = len(SIDES)
        for i in range(args.rounds):
            for side in SIDES[i % n :] + SIDES[: i % n]:
                if side == "shared":  # the folder above the files, shared while they are made and read
                    admin(system.fs_dir, "shares", "add", str(folder), grantee, "--role", "reader")
                if side == "quota":  # a limit far above what the run makes: every change is checked
                    admin(system.fs_dir, "users", "set", owner, "--quota", "1T", "--quota-files", "100000000")
                if side == "retention":  # a rule nothing of the run reaches, and an eviction size far above
                    admin(system.fs_dir, "retention", "set", str(folder), "--max-age", "30d", "--min-age", "1d")
                    admin(system.fs_dir, "users", "set", owner, "--max-size", "1T", "--evict", "oldest")
                root = folder / f"{side}{i}"
                figures = seen[side]
                figures.setdefault("create", []).append(create(root, args.files))
                system.cold_remount()
                drop_caches()
                figures.setdefault("stat", []).append(stat_all(root, args.files))
                figures.setdefault("open", []).append(open_all(root, args.files))
                figures.setdefault("delete", []).append(delete_all(root, args.files))
                figures.setdefault("rsync", []).append(rsync_in(src, root))
                if side == "shared":
                    admin(system.fs_dir, "shares", "remove", str(folder), grantee)
                if side == "quota":
                    admin(system.fs_dir, "users", "set", owner, "--quota", "0", "--quota-files", "0")
                if side == "retention":
                    admin(system.fs_dir, "retention", "clear", str(folder))
                    admin(system.fs_dir, "users", "set", owner, "--evict", "none")
    finally:
        system.cleanup()
        for name in (owner, grantee):
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)
    print(f"repfs-local, {args.files} files in 50 folders, median of {args.rounds} (ops/s)")
    print("  ".join([f"{'workload':10}", *(f"{s:>10}" for s in SIDES), *(f"{s + '/none':>15}" for s in SIDES[1:])]))
    summary = {}
    for workload in WORKLOADS:
        med = {side: statistics.median(seen[side][workload]) for side in SIDES}
        summary[workload] = med
        cells = [f"{workload:10}", *(f"{med[s]:10.0f}" for s in SIDES)]
        print("  ".join(cells + [f"{med[s] / med['none']:15.2f}" for s in SIDES[1:]]))
    out = Path(__file__).resolve().parent / "results" / f"policy-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"files": args.files, "rounds": args.rounds, "runs": seen, "median": summary}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
