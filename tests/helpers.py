"""Real repfs mounts in a subprocess, and small tools the mount tests share.

`Repfs` owns three pool directories, a filesystem directory, a key file and a mount point
under one base directory. It runs `repfs mkfs`, mounts with `python -m repfs.cli mount
--foreground --ready-fd` (the daemon's stderr goes to a log file under the base
directory) and unmounts with `repfs umount`. Every instance that has a daemon running is
in `Repfs.live`, so that a watchdog can kill daemons when a test is about to time out:
a process blocked in a FUSE request can only be freed by ending the daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import os
import pickle
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from repfs.admin.auth import user_socket_path
from repfs.backend.keys import TEMP_PREFIX

REPFS = [sys.executable, "-m", "repfs.cli"]

# Log lines that make a test fail unless the test declares them expected.
BAD_LOG_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")

# Files in FS_DIR that change when a mount is merely attempted: lock files and logs.
VOLATILE = frozenset({"mount.lock", "meta/lock.mdb", "repfs.log"})

MOUNT_TIMEOUT = 60.0
UMOUNT_TIMEOUT = 120.0


def run_repfs(
    *args: str, check: bool = False, timeout: float = 120.0, pass_fds: Iterable[int] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the repfs CLI; never reads the test's standard input."""
    res = subprocess.run(
        [*REPFS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        pass_fds=tuple(pass_fds),
    )
    if check and res.returncode != 0:
        raise AssertionError(f"repfs {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def is_mounted(path: Path) -> bool:
    """Whether anything is mounted on `path` (from /proc/self/mountinfo: works for dead FUSE mounts)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def detach(path: Path) -> None:
    """Lazily unmount whatever is on `path` (a dead FUSE mount included)."""
    subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True, check=False, timeout=30)
    if is_mounted(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def lock_is_free(fs_dir: Path) -> bool:
    """Whether no daemon holds FS_DIR's mount lock (i.e. nothing serves this filesystem)."""
    lock = fs_dir / "mount.lock"
    if not lock.exists():
        return True
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def make_key(path: Path) -> Path:
    path.write_bytes(os.urandom(32).hex().encode())
    path.chmod(0o600)
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Relative path → sha256 (or "<dir>", "-> target") of everything under `root`."""
    skip = set(exclude)
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel in skip:
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = sha256(p)
    return out


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll `predicate()` until it is true or the deadline passes (it waits on another process)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def oserror(fn: Callable[[], Any]) -> int | None:
    """The errno `fn()` fails with, or None if it succeeds."""
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return None


def errno_name(code: int | None) -> str:
    return "success" if code is None else errno.errorcode.get(code, str(code))


# --- renameat2 ------------------------------------------------------------------------

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "i686": 353, "armv7l": 382}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def renameat2(old: Path | str, new: Path | str, flags: int) -> None:
    """rename(2) with flags (RENAME_NOREPLACE, RENAME_EXCHANGE), through the raw syscall."""
    nr = _SYS_RENAMEAT2[os.uname().machine]
    syscall = _libc.syscall
    syscall.restype = ctypes.c_long
    ret = syscall(
        ctypes.c_long(nr),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(old)),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(new)),
        ctypes.c_uint(flags),
    )
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(old), None, str(new))


# --- the filesystem under test --------------------------------------------------------


class Repfs:
    """A repfs filesystem with `npools` local pools under `base`, mounted in a subprocess."""

    live: ClassVar[set[Repfs]] = set()
    standalone: ClassVar[bool] = False  # the test is marked `standalone`: every mount says --pack-max 0

    def __init__(self, base: Path, *, npools: int = 3, replicas: int = 2, block_size: str = "64K") -> None:
        self.base = base
        self.npools = npools
        self.replicas = replicas
        self.block_size = block_size
        self.fs_dir = base / "fs"
        self.mnt = base / "mnt"
        self.pools = [base / f"pool{i + 1}" for i in range(npools)]
        base.mkdir(parents=True, exist_ok=True)
        self.mnt.mkdir(exist_ok=True)
        self.key = make_key(base / "key")
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.expected_log: list[re.Pattern[str]] = []
        self.mount_args: tuple[str, ...] = ()
        self.mount_notes: list[str] = []
        self.umount_said = ""

    def __repr__(self) -> str:
        return f"Repfs({self.base})"

    @property
    def block_bytes(self) -> int:
        units = {"K": 1 << 10, "M": 1 << 20}
        return int(self.block_size[:-1]) * units[self.block_size[-1]]

    # --- life cycle ---------------------------------------------------------------------
    def mkfs(self, *extra: str) -> None:
        args = ["mkfs", str(self.fs_dir), "--key-file", str(self.key)]
        for p in self.pools:
            args += ["--pool", f"file://{p}"]
        run_repfs(*args, "--replicas", str(self.replicas), "--block-size", self.block_size, *extra, check=True)

    def mount(self, *extra: str, key: Path | None = None, timeout: float = MOUNT_TIMEOUT) -> None:
        """Mount in the foreground in a subprocess; return once it answered "ok" on its ready fd."""
        assert self.proc is None, "already mounted"
        if Repfs.standalone and not any(a.startswith("--pack-max") for a in extra):
            extra = (*extra, "--pack-max", "0")  # a test of blocks as their own objects
        log = self.base / f"daemon{len(self.logs)}.log"
        self.logs.append(log)
        self.mount_args = extra
        ready_r, ready_w = os.pipe()
        cmd = [
            *REPFS, "mount", str(self.fs_dir), str(self.mnt), "--foreground",
            "--key-file", str(key or self.key), "--ready-fd", str(ready_w),
            "--cache-size", "64M", "--max-dirty", "16M", *extra,
        ]  # fmt: skip
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, pass_fds=(ready_w,), stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        os.close(ready_w)
        answer = b""
        try:
            deadline = time.monotonic() + timeout
            while not answer.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                    break
                chunk = os.read(ready_r, 4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            os.close(ready_r)
        first, *notes = answer.decode(errors="replace").strip().splitlines() or [""]
        if first != "ok":
            proc.kill()
            proc.wait(timeout=30)
            if is_mounted(self.mnt):
                detach(self.mnt)
            raise AssertionError(
                f"mount did not become ready within {timeout:g}s (answer {answer!r}, exit {proc.returncode}); "
                f"daemon log:\n{log.read_text(errors='replace')}"
            )
        self.proc = proc
        self.mount_notes = notes  # what the terminal is told besides "mounted"
        Repfs.live.add(self)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def unmount(self) -> None:
        """`repfs umount`, which returns when the daemon has stored everything and exited."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            res = run_repfs("umount", str(self.mnt), timeout=UMOUNT_TIMEOUT) if proc.poll() is None else None
            if res is None or res.returncode != 0:
                detach(self.mnt)
            try:
                code = proc.wait(timeout=UMOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
                raise AssertionError(f"the daemon did not exit after unmount; log:\n{self.log_tail()}") from None
        finally:
            Repfs.live.discard(self)
            if is_mounted(self.mnt):
                detach(self.mnt)
        if res is not None and res.returncode != 0:
            raise AssertionError(f"repfs umount failed ({res.returncode}): {res.stderr}\n{self.log_tail()}")
        self.umount_said = res.stdout.strip() if res is not None else ""
        if code != 0:
            raise AssertionError(f"the daemon exited with {code}; log:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the daemon and detach its dead mount."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait(timeout=30)
        Repfs.live.discard(self)
        detach(self.mnt)

    def remount(self, *extra: str) -> None:
        self.unmount()
        self.mount(*(extra or self.mount_args))

    def cleanup(self) -> None:
        """Whatever happened: no daemon, nothing mounted (for fixture teardown)."""
        try:
            if self.proc is not None:
                self.unmount()
        finally:
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait(timeout=30)
                self.proc = None
            Repfs.live.discard(self)
            if is_mounted(self.mnt):  # e.g. a background mount a test started
                if lock_is_free(self.fs_dir):
                    detach(self.mnt)
                else:
                    res = run_repfs("umount", str(self.mnt), timeout=UMOUNT_TIMEOUT)
                    if res.returncode != 0:
                        detach(self.mnt)
            if lock_is_free(self.fs_dir):  # the user socket's folder a killed daemon left
                shutil.rmtree(user_socket_path(self.fs_dir).parent, ignore_errors=True)

    def emergency_stop(self) -> None:
        """Kill the daemon from another thread: frees any process blocked on the mount."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    # --- logs ---------------------------------------------------------------------------
    def expect_log(self, pattern: str) -> None:
        """Declare that log lines matching `pattern` (a regex) are expected."""
        self.expected_log.append(re.compile(pattern))

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_size(self) -> tuple[int, int]:
        """A mark in the logs (for `unexpected_log_lines(since=...)`)."""
        last = self.logs[-1] if self.logs else None
        return len(self.logs), last.stat().st_size if last is not None and last.exists() else 0

    def unexpected_log_lines(self, since: tuple[int, int] = (0, 0)) -> list[str]:
        n, offset = since
        text = ""
        for i, p in enumerate(self.logs):
            if i + 1 < n or not p.exists():
                continue
            raw = p.read_bytes()
            text += raw[offset if i + 1 == n else 0 :].decode(errors="replace") + "\n"
        return [
            line
            for line in text.splitlines()
            if BAD_LOG_LINE.search(line) and not any(e.search(line) for e in self.expected_log)
        ]

    # --- pools --------------------------------------------------------------------------
    def pool_objects(self, pool: Path) -> dict[str, bytes]:
        """Block objects of one pool: key → bytes."""
        blocks = pool / "blocks"
        if not blocks.exists():
            return {}
        return {str(p.relative_to(pool)): p.read_bytes() for p in _objects(blocks)}

    def pool_keys(self, pool: Path) -> set[str]:
        """Keys of the block objects of one pool (files being written are left out)."""
        return {str(p.relative_to(pool)) for p in _objects(pool / "blocks")}

    def all_keys(self) -> set[str]:
        return set().union(*(self.pool_keys(p) for p in self.pools))

    def pools_bytes(self) -> int:
        return sum(p.stat().st_size for pool in self.pools for p in pool.rglob("*") if p.is_file())

    def fs_dir_digest(self) -> dict[str, str]:
        return tree_digest(self.fs_dir, exclude=VOLATILE)

    def pools_digest(self) -> dict[str, dict[str, str]]:
        return {p.name: tree_digest(p) for p in self.pools}


MOUNTS = pytest.StashKey[list[Repfs]]()


def _objects(blocks: Path) -> list[Path]:
    if not blocks.exists():
        return []
    return [p for p in blocks.rglob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX)]


def register(node: pytest.Item, fs: Repfs) -> None:
    """Attach `fs` to a test: its daemon log goes in the test's report if it fails."""
    mounts = node.stash.setdefault(MOUNTS, [])
    if fs not in mounts:
        mounts.append(fs)


def check_logs(fs: Repfs, since: tuple[int, int] = (0, 0)) -> None:
    """Fail the test if the daemon logged an error or traceback not declared with `expect_log`."""
    bad = fs.unexpected_log_lines(since)
    if bad:
        pytest.fail(f"{fs}: unexpected lines in the daemon log:\n" + "\n".join(bad[:30]), pytrace=False)


@contextlib.contextmanager
def opened(path: Path | str, flags: int, mode: int = 0o644) -> Iterator[int]:
    fd = os.open(path, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)


# --- callers as other users -------------------------------------------------------------


def run_as(uid: int, gid: int, fn: Callable[[], Any], groups: Iterable[int] = (), umask: int = 0o022) -> Any:
    """Run `fn()` in a forked child with the given uid, gid and supplementary groups (as
    setresuid/setresgid set them: real, effective and saved, so the kernel's checks see
    exactly that caller). Returns what `fn` returned (picklable), or the OSError's errno
    as `Errno(n)`."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        try:
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.umask(umask)
            try:
                result: Any = fn()
            except OSError as exc:
                result = Errno(exc.errno or 0)
            payload = pickle.dumps(result)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            payload = pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        with os.fdopen(w, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result = pickle.loads(data)
    if isinstance(result, RuntimeError):
        raise AssertionError(f"the child as uid {uid} failed: {result}")
    return result


class Errno(int):
    """An errno returned by `run_as` (an int, printed by name)."""

    def __repr__(self) -> str:
        return errno.errorcode.get(int(self), str(int(self)))


def outcome(fn: Callable[[], Any]) -> str:
    """"ok" or the errno name of `fn()`: for tables of results to compare."""
    return errno_name(oserror(fn))


@contextlib.contextmanager
def public_filesystem(
    node: pytest.Item | None = None, *extra: str, under: Path | None = None, block_size: str = "64K"
) -> Iterator[Repfs]:
    """A filesystem mounted with `-o allow_other` under a directory every user may reach
    (pytest's tmp_path is private to root), unmounted and removed afterwards. `under`:
    where that directory is made (default: the temp dir)."""
    base = Path(tempfile.mkdtemp(prefix="repfs-public-", dir=under))
    base.chmod(0o755)
    fs = Repfs(base / "fs", block_size=block_size)
    fs.base.chmod(0o755)
    if node is not None:
        register(node, fs)
    try:
        fs.mkfs()
        fs.mount("-o", "allow_other", *extra)
        yield fs
    finally:
        try:
            fs.cleanup()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    check_logs(fs)


@contextlib.contextmanager
def public_dir(prefix: str = "repfs-ref-") -> Iterator[Path]:
    """A directory on the local disk every user may reach: the reference for "what Linux does"."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
