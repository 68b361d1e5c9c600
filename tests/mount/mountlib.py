"""Start and stop real repfs mounts in a subprocess, for the acceptance tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPFS = [sys.executable, "-m", "repfs.cli"]


def run_repfs(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*REPFS, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"repfs {' '.join(args)} failed ({res.returncode}): {res.stderr}")
    return res


@dataclass
class RepfsMount:
    """Three local pools, a filesystem directory and a mount point under `base`."""

    base: Path
    npools: int = 3
    replicas: int = 2
    block_size: str = "64K"
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fs_dir = self.base / "fs"
        self.mnt = self.base / "mnt"
        self.key = self.base / "key"
        self.pools = [self.base / f"pool{i + 1}" for i in range(self.npools)]
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.key.write_bytes(os.urandom(32).hex().encode())
        self.key.chmod(0o600)

    def mkfs(self) -> None:
        args = ["mkfs", str(self.fs_dir), "--key-file", str(self.key)]
        for p in self.pools:
            args += ["--pool", f"file://{p}"]
        run_repfs(*args, "--replicas", str(self.replicas), "--block-size", self.block_size)

    def mount(self, *extra: str, key: Path | None = None) -> None:
        log = self.base / f"daemon{len(self.logs)}.log"
        self.logs.append(log)
        ready_r, ready_w = os.pipe()
        cmd = [*REPFS, "mount", str(self.fs_dir), str(self.mnt), "--foreground", "--key-file",
               str(key or self.key), "--ready-fd", str(ready_w), "--cache-size", "64M", "--max-dirty", "16M", *extra]
        with open(log, "wb") as logf:
            self.proc = subprocess.Popen(cmd, pass_fds=(ready_w,), stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as f:
            answer = f.read().decode().strip()
        if answer != "ok":
            self.proc.wait(timeout=30)
            self.proc = None
            raise AssertionError(f"mount failed: {answer!r}\n{log.read_text()}")

    def unmount(self) -> None:
        if self.proc is None:
            return
        res = run_repfs("umount", str(self.mnt), check=False)
        if res.returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], check=False)
        self.proc.wait(timeout=120)
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None
        subprocess.run(["fusermount3", "-uz", str(self.mnt)], check=False)

    def remount(self) -> None:
        self.unmount()
        self.mount()

    def pool_objects(self, pool: Path) -> dict[str, bytes]:
        blocks = pool / "blocks"
        if not blocks.exists():
            return {}
        return {str(p.relative_to(pool)): p.read_bytes() for p in blocks.rglob("*") if p.is_file()}

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    """Poll `predicate()` until true or the deadline (tests only: waits on another process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False
