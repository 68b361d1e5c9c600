"""Processes, mounts and the kernel: the small helpers every other bench module uses.

Nothing here waits without a deadline: every subprocess gets a timeout, every poll a
deadline, and a FUSE mount that stops answering is detached (`fusermount3 -uz`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
VENV_BIN = Path(sys.executable).parent
_PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """A step failed in a way worth one line in the table ("error: <why>")."""


def tool(name: str) -> str:
    """An executable: beside this Python (the venv's bin/) first, else on PATH."""
    beside = VENV_BIN / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} is not installed")
    return found


def run(
    cmd: Sequence[str],
    *,
    timeout: float = 120.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (no stdin, output captured); BenchError on failure."""
    try:
        res = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{Path(cmd[0]).name} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise BenchError(f"{cmd[0]}: {exc}") from None
    if check and res.returncode != 0:
        msg = (res.stderr.strip() or res.stdout.strip()).splitlines()
        raise BenchError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed ({res.returncode}): {' '.join(msg[-3:])}")
    return res


def version_of(cmd: Sequence[str], pattern: str = r"(\d+\.\d+(?:\.\d+)?)") -> str:
    """The first version number a command prints, or "" if it cannot run."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(pattern, res.stdout + res.stderr)
    return m.group(1) if m else ""


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the bench process dies (no daemon left behind)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# --- /proc --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStats:
    peak_rss: int  # VmHWM, bytes
    cpu_s: float  # user + system seconds, including reaped children


def _one(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, VmHWM bytes, CPU seconds incl. reaped children) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    m = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.M)
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is the state (field 3)
    tick = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return int(fields[1]), int(m.group(1)) * 1024 if m else 0, cpu


def proc_stats(pid: int) -> ProcStats | None:
    """Peak RSS and CPU of a live process and all its descendants (JuiceFS runs a supervisor
    and a worker): VmHWM summed over the tree, CPU summed; None once the process is gone."""
    top = _one(pid)
    if top is None:
        return None
    procs: dict[int, tuple[int, int, float]] = {pid: top}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid and (info := _one(int(entry))) is not None:
            procs[int(entry)] = info
    tree = {pid}
    grew = True
    while grew:
        grown = {p for p, (ppid, _, _) in procs.items() if ppid in tree} - tree
        tree |= grown
        grew = bool(grown)
    return ProcStats(sum(procs[p][1] for p in tree), sum(procs[p][2] for p in tree))


def drop_page_cache() -> bool:
    """Write back, then drop the page cache, dentries and inodes; False when not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# --- mounts -------------------------------------------------------------------------------


def mounted_fstype(path: Path) -> str | None:
    """The filesystem type mounted exactly on `path` (e.g. "fuse.juicefs"), else None."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == target:
                return parts[parts.index("-") + 1]
    return None


def detach(path: Path) -> None:
    """Lazily unmount whatever is on `path`, a dead FUSE mount included."""
    for cmd in (["fusermount3", "-uz", str(path)], ["umount", "-l", str(path)]):
        if mounted_fstype(path) is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class Daemon:
    """A filesystem daemon kept in the foreground as our child, its output in a log file."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            log.write(f"\n===== {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=die_with_parent,  # only prctl: safe between fork and exec
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the daemon
            )

    def wait_mounted(self, mountpoint: Path, timeout: float = 60.0) -> None:
        """Until `mountpoint` carries a FUSE mount; BenchError if the daemon exits first."""

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc and self.proc.returncode}): {self.log_tail(3)}")
            return (mounted_fstype(mountpoint) or "").startswith("fuse")

        if not wait_for(ready, timeout):
            self.kill()
            detach(mountpoint)
            raise BenchError(f"{self.name} did not mount within {timeout:g}s: {self.log_tail(3)}")

    def wait_exit(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
