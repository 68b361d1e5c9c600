"""The workloads, each run in a child process so that a hung mount can never hang the bench.

The parent (bench.runner) runs

    python -m bench.workloads NAME '{"json": "arguments"}'

with a timeout; the child prints one line of JSON with its figures as the last line of
its standard output. A child stuck on a dead FUSE mount is killed, and the mount aborted.

Every byte written is unique and incompressible: an AES-256-CTR keystream of a seed, so
neither compression nor deduplication flatters a system, and every byte read back is
checked against it. MB is 10^6 bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 1 << 20  # size of each write() and read() call
Result = dict[str, Any]


class Stream:
    """Incompressible bytes that never repeat: the AES-256-CTR keystream of a seed."""

    def __init__(self, seed: str) -> None:
        self.key = hashlib.sha256(seed.encode()).digest()

    def at(self, offset: int, n: int) -> bytes:
        assert offset % 16 == 0
        counter = (offset // 16).to_bytes(16, "big")
        enc = Cipher(algorithms.AES(self.key), modes.CTR(counter)).encryptor()
        return enc.update(bytes(n)) + enc.finalize()


class CompressibleStream(Stream):
    """Bytes that compress about 5 to 1 and never repeat: in every 64 KiB, 12 KiB of the
    keystream and 52 KiB of text naming the unit (logs, sources, CSV). A 4 MiB block then
    stores under 1 MiB, so repfs packs it (journal.pack)."""

    UNIT = 64 << 10
    RANDOM = 12 << 10

    def at(self, offset: int, n: int) -> bytes:
        assert offset % self.UNIT == 0
        out = bytearray()
        for unit in range(offset // self.UNIT, (offset + n + self.UNIT - 1) // self.UNIT):
            text = f"{unit:012d} repfs bench line of compressible text, the same words again;\n".encode()
            filler = (text * (self.UNIT // len(text) + 1))[: self.UNIT - self.RANDOM]
            out += super().at(unit * self.UNIT, self.RANDOM) + filler
        return bytes(out[:n])


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: Path, size: int, stream: Stream, base: int = 0, *, fsync: bool = True) -> tuple[float, float]:
    """Write `size` bytes of the stream from offset `base`; (seconds in write(), seconds in fsync())."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    write_s = fsync_s = 0.0
    try:
        for off in range(0, size, CHUNK):
            data = stream.at(base + off, min(CHUNK, size - off))
            t0 = time.perf_counter()
            write_all(fd, data)
            write_s += time.perf_counter() - t0
        if fsync:
            t0 = time.perf_counter()
            os.fsync(fd)
            fsync_s = time.perf_counter() - t0
    finally:
        os.close(fd)
    return write_s, fsync_s


# --- the workloads ------------------------------------------------------------------------


def seq_write(path: str, size: int, seed: str) -> Result:
    """One large file of incompressible data, 1 MiB write() calls, then one fsync."""
    write_s, fsync_s = write_file(Path(path), size, Stream(seed))
    return {"bytes": size, "write_s": write_s, "fsync_s": fsync_s, "value": mbps(size, write_s + fsync_s)}


def seq_write_compressible(path: str, size: int, seed: str) -> Result:
    """As seq_write, with data that compresses about 5 to 1 (CompressibleStream)."""
    write_s, fsync_s = write_file(Path(path), size, CompressibleStream(seed))
    return {"bytes": size, "write_s": write_s, "fsync_s": fsync_s, "value": mbps(size, write_s + fsync_s)}


def make_file(path: str, size: int, seed: str) -> Result:
    """Untimed preparation: a file of incompressible data, fsync'd."""
    write_file(Path(path), size, Stream(seed))
    return {"bytes": size}


def seq_read(path: str, size: int, seed: str) -> Result:
    """Read a file back with 1 MiB read() calls (timed), checking every byte (untimed)."""
    stream = Stream(seed)
    buf = bytearray(CHUNK)
    read_s = 0.0
    off = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            t0 = time.perf_counter()
            n = f.readinto(buf)
            read_s += time.perf_counter() - t0
            if not n:
                break
            if buf[:n] != stream.at(off, n):
                raise RuntimeError(f"wrong data read at offset {off}")
            off += n
    if off != size:
        raise RuntimeError(f"read {off} bytes, wrote {size}")
    return {"bytes": size, "read_s": read_s, "value": mbps(size, read_s)}


def _write_packet(root: Path, i: int, data: bytes) -> None:
    fd = os.open(root / f"packet-{i:06d}.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_packets(root: Path, payloads: list[bytes]) -> None:
    """Spot check, untimed."""
    count = len(payloads)
    for i in (0, count // 2, count - 1):
        if (root / f"packet-{i:06d}.bin").read_bytes() != payloads[i]:
            raise RuntimeError(f"packet {i} reads back wrong")


def packets(folder: str, count: int, size: int, seed: str) -> Result:
    """`count` files of `size` bytes, each created, written, fsync'd and closed in turn."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    stream = Stream(seed)
    payloads = [stream.at(i * size, size) for i in range(count)]
    t0 = time.perf_counter()
    for i, data in enumerate(payloads):
        _write_packet(root, i, data)
    seconds = time.perf_counter() - t0
    _check_packets(root, payloads)
    return {"count": count, "bytes_each": size, "seconds": seconds, "value": count / seconds}


def packets_parallel(folder: str, count: int, size: int, writers: int, seed: str) -> Result:
    """`count` files of `size` bytes as `packets` makes them, by `writers` threads at once
    (application servers storing packets side by side: fsyncs that may share a commit)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    stream = Stream(seed)
    payloads = [stream.at(i * size, size) for i in range(count)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda i: _write_packet(root, i, payloads[i]), range(count)))
    seconds = time.perf_counter() - t0
    _check_packets(root, payloads)
    return {"count": count, "bytes_each": size, "writers": writers, "seconds": seconds, "value": count / seconds}


def packet_read(folder: str, count: int, size: int, seed: str) -> Result:
    """The packets written by `packets`, each opened by name, read whole and closed in turn
    (timed; after the cold remount), then checked byte for byte (untimed)."""
    root = Path(folder)
    got: list[bytes] = []
    t0 = time.perf_counter()
    for i in range(count):
        fd = os.open(root / f"packet-{i:06d}.bin", os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, size + 1):
                parts.append(chunk)
        finally:
            os.close(fd)
        got.append(b"".join(parts))
    seconds = time.perf_counter() - t0
    stream = Stream(seed)
    for i, data in enumerate(got):
        if data != stream.at(i * size, size):
            raise RuntimeError(f"packet {i} reads back wrong")
    return {"count": count, "bytes_each": size, "seconds": seconds, "value": count / seconds}


def parallel(folder: str, files: int, size: int, writers: int, seed: str) -> Result:
    """`files` files of `size` bytes written by `writers` threads at once, each fsync'd."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    stream = Stream(seed)
    stride = -(-size // 16) * 16

    def one(i: int) -> None:
        write_file(root / f"par-{i:04d}.bin", size, stream, base=i * stride)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(one, range(files)))
    seconds = time.perf_counter() - t0
    total = files * size
    return {"files": files, "bytes": total, "writers": writers, "seconds": seconds, "value": mbps(total, seconds)}


def _md_paths(root: Path, files: int, dirs: int) -> list[Path]:
    return [root / f"d{i % dirs:03d}" / f"f{i:06d}" for i in range(files)]


def md_create(folder: str, files: int, dirs: int) -> Result:
    """Create `dirs` directories and `files` empty files spread over them (ops = files)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = _md_paths(root, files, dirs)
    t0 = time.perf_counter()
    for d in range(dirs):
        os.mkdir(root / f"d{d:03d}")
    for p in paths:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    seconds = time.perf_counter() - t0
    return {"files": files, "dirs": dirs, "seconds": seconds, "value": files / seconds}


def md_stat(folder: str, files: int, dirs: int) -> Result:
    """stat() every file (the parent drops the kernel's caches first)."""
    paths = _md_paths(Path(folder), files, dirs)
    t0 = time.perf_counter()
    for p in paths:
        os.stat(p)
    seconds = time.perf_counter() - t0
    return {"files": files, "seconds": seconds, "value": files / seconds}


def md_delete(folder: str, files: int, dirs: int) -> Result:
    """Unlink every file, then remove the directories (ops = files)."""
    root = Path(folder)
    paths = _md_paths(root, files, dirs)
    t0 = time.perf_counter()
    for p in paths:
        os.unlink(p)
    for d in range(dirs):
        os.rmdir(root / f"d{d:03d}")
    seconds = time.perf_counter() - t0
    return {"files": files, "seconds": seconds, "value": files / seconds}


def rsync_in(src: str, dst: str, timeout: float) -> Result:
    """`rsync -a SRC/ DST/` (timed), then `diff -r SRC DST` (timed separately)."""
    count = sum(len(d) + len(f) for _, d, f in os.walk(src))
    t0 = time.perf_counter()
    res = subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if res.returncode not in (0, 23, 24):  # 23/24: some files or attributes not transferred
        raise RuntimeError(f"rsync failed ({res.returncode}): {last_line(res.stderr)}")
    t0 = time.perf_counter()
    diff = subprocess.run(["diff", "-r", "-q", src, dst], capture_output=True, text=True, timeout=timeout)
    diff_s = time.perf_counter() - t0
    return {
        "entries": count,
        "seconds": seconds,
        "value": seconds,
        "diff_s": diff_s,
        "identical": diff.returncode == 0,
        "rsync_exit": res.returncode,
        "rsync_errors": res.stderr.splitlines()[:5],
        "differences": diff.stdout.splitlines()[:5] + diff.stderr.splitlines()[:5],
    }


def randread(path: str, size: int, runtime: float, jobs: int) -> Result:
    """fio: random 4 KiB reads (psync, `jobs` threads, iodepth 1); O_DIRECT where allowed."""
    for direct in (1, 0):
        cmd = [
            "fio", "--name=randread", f"--filename={path}", "--rw=randread", "--bs=4k", f"--size={size}",
            f"--direct={direct}", "--ioengine=psync", f"--numjobs={jobs}", "--thread", "--time_based",
            f"--runtime={runtime:g}", "--group_reporting", "--randrepeat=0", "--norandommap", "--readonly",
            "--invalidate=1", "--output-format=json",
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime * 3 + 60)
        if res.returncode == 0:
            start = res.stdout.find("{")
            job = json.loads(res.stdout[start:])["jobs"][0]["read"]
            return {
                "iops": job["iops"],
                "value": job["iops"],
                "direct_io": bool(direct),
                "lat_mean_us": job.get("clat_ns", {}).get("mean", 0) / 1000,
                "bytes": job["io_bytes"],
            }
        error = last_line(res.stderr) or last_line(res.stdout)
    raise RuntimeError(f"fio failed: {error}")


WORKLOADS: dict[str, Callable[..., Result]] = {
    f.__name__: f
    for f in (seq_write, seq_write_compressible, make_file, seq_read, packets, packet_read, parallel, md_create,
              md_stat, md_delete, rsync_in, randread, packets_parallel)
}


def main() -> int:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = WORKLOADS[name](**args)
    except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        why = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        print(json.dumps({"error": why[:400]}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
