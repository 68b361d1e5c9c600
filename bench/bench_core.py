"""Core benchmark of repfs on the embedded default (local directory pools).

Not a test: it measures and reports, it asserts nothing about speed. It makes a fresh
filesystem in a temporary folder (3 local pools, 2 replicas, 4 MiB blocks), mounts it in
the background and measures:

- sequential write of one large file of incompressible data, then fsync (MB/s);
- sequential read of that file after an unmount and a mount with a fresh, empty
  --cache-dir and the kernel's page cache dropped (cold caches, MB/s);
- "packets": N files of 64 KiB, each created, written, fsync'd and closed in turn (files/s);
- the same workloads on a plain local directory of the same disk, as the ceiling;
- the daemon's peak RSS (VmHWM) and CPU seconds, read from /proc before each unmount.

Every byte written is unique and incompressible (an AES-CTR keystream), so neither
deduplication nor compression flatters the figures; every byte read back is checked.

    .venv/bin/python bench/bench_core.py            1 GiB file, 2,000 packets
    .venv/bin/python bench/bench_core.py --quick    256 MiB file, 500 packets

It prints a table and writes the figures with the machine's description to
bench/results/<UTC timestamp>.json. Run as root to drop the page cache between write and
read; otherwise the read of the plain directory is warm, and the JSON says so.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MiB = 1 << 20
CHUNK = 1 * MiB  # size of each write() and read() call
REPFS = [sys.executable, "-m", "repfs.cli"]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


# --- data ------------------------------------------------------------------------------


class Stream:
    """Incompressible bytes that never repeat: the AES-256-CTR keystream of a seed."""

    def __init__(self, seed: str) -> None:
        self.key = hashlib.sha256(seed.encode()).digest()

    def at(self, offset: int, n: int) -> bytes:
        assert offset % 16 == 0
        counter = (offset // 16).to_bytes(16, "big")
        enc = Cipher(algorithms.AES(self.key), modes.CTR(counter)).encryptor()
        return enc.update(bytes(n)) + enc.finalize()


# --- the daemon and the machine --------------------------------------------------------


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res


@dataclass
class ProcStats:
    peak_rss_bytes: int
    rss_bytes: int
    cpu_user_s: float
    cpu_system_s: float

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s


def proc_stats(pid: int) -> ProcStats:
    status = Path(f"/proc/{pid}/status").read_text()

    def kib(field: str) -> int:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", status, re.M)
        return int(m.group(1)) * 1024 if m else 0

    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    tick = os.sysconf("SC_CLK_TCK")
    return ProcStats(kib("VmHWM"), kib("VmRSS"), int(fields[11]) / tick, int(fields[12]) / tick)


def drop_page_cache() -> bool:
    """Write back and drop the kernel's page cache (root only); False when not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def dir_bytes(root: Path) -> tuple[int, int]:
    """Bytes and files below root (apparent size)."""
    total = files = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
    return total, files


def machine_info() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text()
    m = re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M)
    cpu = ""
    with contextlib.suppress(OSError):
        m2 = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m2.group(1).strip() if m2 else ""
    versions: dict[str, str] = {}
    for dist in ("repfs", "pyfuse3", "trio", "lmdb", "zstandard", "cryptography", "blake3", "minio"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["fusermount3", "-V"], capture_output=True, text=True).stdout.strip()
        versions["fusermount3"] = out.split()[-1] if out else ""
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
        if head.returncode == 0:
            git = {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    return {
        "cores": os.cpu_count(),
        "memory_bytes": int(m.group(1)) * 1024 if m else None,
        "cpu": cpu,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git": git,
    }


class Mount:
    """A background repfs mount; always unmounted on exit."""

    def __init__(self, fs_dir: Path, mountpoint: Path, key: Path, cache_dir: Path) -> None:
        self.fs_dir, self.mountpoint, self.key, self.cache_dir = fs_dir, mountpoint, key, cache_dir
        self.pid = 0
        self.mounted = False
        self.umount_s = 0.0

    def __enter__(self) -> Mount:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        out = run(
            [
                *REPFS,
                "mount",
                str(self.fs_dir),
                str(self.mountpoint),
                "--key-file",
                str(self.key),
                "--cache-dir",
                str(self.cache_dir),
            ]
        ).stdout
        self.mounted = True
        m = re.search(r"daemon pid (\d+)", out)
        if m:
            self.pid = int(m.group(1))
        else:  # the daemon writes its pid into the lock file it holds
            self.pid = int((self.fs_dir / "mount.lock").read_text().split()[0])
        return self

    def stats(self) -> ProcStats:
        return proc_stats(self.pid)

    def umount(self) -> None:
        if not self.mounted:
            return
        t0 = time.perf_counter()
        run([*REPFS, "umount", str(self.mountpoint)])
        self.umount_s = time.perf_counter() - t0
        self.mounted = False

    def __exit__(self, *exc: object) -> None:
        if not self.mounted:
            return
        try:
            self.umount()
        except Exception as e:  # noqa: BLE001 - best effort, then force
            print(f"bench: clean unmount failed ({e}); detaching", file=sys.stderr)
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
            self.mounted = False


# --- workloads -------------------------------------------------------------------------


@dataclass
class SeqWrite:
    bytes: int
    write_s: float  # time inside write() calls
    fsync_s: float  # time inside the final fsync()

    @property
    def total_s(self) -> float:
        return self.write_s + self.fsync_s


def seq_write(path: Path, size: int, stream: Stream) -> SeqWrite:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    write_s = 0.0
    try:
        for off in range(0, size, CHUNK):
            data = stream.at(off, min(CHUNK, size - off))
            t0 = time.perf_counter()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            write_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        os.fsync(fd)
        fsync_s = time.perf_counter() - t0
    finally:
        os.close(fd)
    return SeqWrite(size, write_s, fsync_s)


def seq_read(path: Path, size: int, stream: Stream) -> float:
    """Seconds inside read() calls; every chunk is compared with what was written."""
    buf = bytearray(CHUNK)
    read_s = 0.0
    with open(path, "rb", buffering=0) as f:
        off = 0
        while True:
            t0 = time.perf_counter()
            n = f.readinto(buf)
            read_s += time.perf_counter() - t0
            if not n:
                break
            if buf[:n] != stream.at(off, n):
                raise RuntimeError(f"{path}: wrong data read at offset {off}")
            off += n
    if off != size:
        raise RuntimeError(f"{path}: read {off} bytes, wrote {size}")
    return read_s


def packets(folder: Path, count: int, size: int, stream: Stream) -> float:
    """Seconds to create, write, fsync and close `count` files in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    payloads = [stream.at(i * size, size) for i in range(count)]
    t0 = time.perf_counter()
    for i, data in enumerate(payloads):
        fd = os.open(folder / f"packet-{i:06d}.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def verify_packets(folder: Path, count: int, size: int, stream: Stream) -> None:
    for i in range(count):
        if (folder / f"packet-{i:06d}.bin").read_bytes() != stream.at(i * size, size):
            raise RuntimeError(f"packet {i} reads back wrong")


# --- main ------------------------------------------------------------------------------


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")


@contextlib.contextmanager
def workdir(base: str | None, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="repfs-bench-", dir=base))
    try:
        yield path
    finally:
        if keep:
            print(f"bench: kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB file and 500 packets")
    ap.add_argument("--size-mib", type=int, help="size of the large file [default: 1024, quick: 256]")
    ap.add_argument("--packets", type=int, help="number of packets [default: 2000, quick: 500]")
    ap.add_argument("--packet-kib", type=int, default=64, help="size of a packet [default: 64]")
    ap.add_argument("--dir", help="where to make the temporary folder [default: the system's temp dir]")
    ap.add_argument("--out", type=Path, help=f"JSON result file [default: {RESULTS_DIR}/<timestamp>.json]")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    size = (args.size_mib or (256 if args.quick else 1024)) * MiB
    count = args.packets or (500 if args.quick else 2000)
    psize = args.packet_kib * 1024
    started = dt.datetime.now(dt.UTC)
    stream = Stream(f"repfs-bench-{started.isoformat()}")

    with workdir(args.dir, args.keep) as tmp:
        pools = [tmp / "pools" / f"pool{i}" for i in (1, 2, 3)]
        fs_dir, mnt, key = tmp / "fs", tmp / "mnt", tmp / "keyfile"
        key.write_bytes(os.urandom(32).hex().encode())
        key.chmod(0o600)
        run(
            [
                *REPFS,
                "mkfs",
                str(fs_dir),
                *[a for p in pools for a in ("--pool", f"file://{p}")],
                "--replicas",
                "2",
                "--block-size",
                "4M",
                "--key-file",
                str(key),
            ]
        )
        res: dict[str, Any] = {}

        print(f"bench: writing {size // MiB} MiB and {count} packets of {psize // 1024} KiB to repfs ...", flush=True)
        with Mount(fs_dir, mnt, key, tmp / "cache-write") as m:
            w = seq_write(mnt / "big.bin", size, stream)
            p_s = packets(mnt / "packets", count, psize, stream)
            st_w = m.stats()
            m.umount()
        stored, objects = dir_bytes(tmp / "pools")
        res["repfs"] = {
            "seq_write": {"bytes": size, "write_s": w.write_s, "fsync_s": w.fsync_s, "MBps": mbps(size, w.total_s)},
            "packets": {"count": count, "bytes_each": psize, "seconds": p_s, "files_per_s": count / p_s},
            "umount_after_writes_s": m.umount_s,
            "daemon_write_mount": vars(st_w) | {"cpu_s": st_w.cpu_s},
            "pools": {"bytes": stored, "objects": objects, "logical_bytes": size + count * psize},
        }

        cold = drop_page_cache()
        print(f"bench: reading it back after a remount (page cache dropped: {cold}) ...", flush=True)
        with Mount(fs_dir, mnt, key, tmp / "cache-read") as m:
            r_s = seq_read(mnt / "big.bin", size, stream)
            verify_packets(mnt / "packets", count, psize, stream)
            st_r = m.stats()
            m.umount()
        res["repfs"]["seq_read_cold"] = {
            "bytes": size,
            "read_s": r_s,
            "MBps": mbps(size, r_s),
            "page_cache_dropped": cold,
        }
        res["repfs"]["daemon_read_mount"] = vars(st_r) | {"cpu_s": st_r.cpu_s}

        print("bench: the same on a plain directory ...", flush=True)
        plain = tmp / "plain"
        plain.mkdir()
        pw = seq_write(plain / "big.bin", size, stream)
        pcold = drop_page_cache()
        pr_s = seq_read(plain / "big.bin", size, stream)
        pp_s = packets(plain / "packets", count, psize, stream)
        res["plain"] = {
            "seq_write": {"bytes": size, "write_s": pw.write_s, "fsync_s": pw.fsync_s, "MBps": mbps(size, pw.total_s)},
            "seq_read_cold": {"bytes": size, "read_s": pr_s, "MBps": mbps(size, pr_s), "page_cache_dropped": pcold},
            "packets": {"count": count, "bytes_each": psize, "seconds": pp_s, "files_per_s": count / pp_s},
        }

    machine = machine_info()
    result = {
        "benchmark": "bench_core",
        "started": started.isoformat(),
        "quick": bool(args.quick),
        "config": {
            "pools": 3,
            "pool_kind": "local directory (same disk)",
            "replicas": 2,
            "write_quorum": 1,
            "block_size": 4 * MiB,
            "file_bytes": size,
            "packets": count,
            "packet_bytes": psize,
            "io_chunk_bytes": CHUNK,
        },
        "machine": machine,
        "results": res,
    }
    out = args.out or RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    r, pl = res["repfs"], res["plain"]
    mi = machine
    print()
    print(
        f"repfs core benchmark: 3 local pools, 2 replicas, 4 MiB blocks, "
        f"{mi['cores']} cores, {(mi['memory_bytes'] or 0) / (1 << 30):.0f} GiB, Python {mi['python']}"
    )
    rows = [
        (
            f"seq write {size // MiB} MiB + fsync",
            f"{r['seq_write']['MBps']:.1f} MB/s",
            f"{pl['seq_write']['MBps']:.1f} MB/s",
        ),
        (
            "seq read, cold caches" + ("" if cold else " (page cache NOT dropped)"),
            f"{r['seq_read_cold']['MBps']:.1f} MB/s",
            f"{pl['seq_read_cold']['MBps']:.1f} MB/s",
        ),
        (
            f"{count} packets of {psize // 1024} KiB, fsync each",
            f"{r['packets']['files_per_s']:.0f} files/s",
            f"{pl['packets']['files_per_s']:.0f} files/s",
        ),
        ("unmount after the writes", f"{r['umount_after_writes_s']:.2f} s", ""),
        (
            "daemon peak RSS (write / read mount)",
            f"{st_w.peak_rss_bytes / MiB:.0f} / {st_r.peak_rss_bytes / MiB:.0f} MiB",
            "",
        ),
        ("daemon CPU (write / read mount)", f"{st_w.cpu_s:.1f} / {st_r.cpu_s:.1f} s", ""),
        (
            "stored on the pools",
            f"{stored / MiB:.0f} MiB in {objects} files ({stored / (size + count * psize):.2f}x logical)",
            "",
        ),
    ]
    print(f"{'':44} {'repfs':>34}   {'plain directory':>16}")
    for name, a, b in rows:
        print(f"{name:44} {a:>34}   {b:>16}")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
