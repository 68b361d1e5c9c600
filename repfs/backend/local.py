"""`LocalPool`: a pool that is a plain directory, one file per object.

The object under key `a/b/c` is the file `<root>/a/b/c`. A put writes a temporary file
beside the target (named with `keys.TEMP_PREFIX`; a large one past the page cache,
`directio`, a small one through it, its pages dropped once fsync'd), fsyncs it, renames
it over the target and fsyncs the directory, so an object is either wholly there or
absent, and durable once `put` returns. Directories are made on
demand below the root, and each new one is made durable in its parent; the root itself is
never made unless `create_root` is given (that is what mkfs does), so a missing root (an
unmounted disk) reads as an unavailable pool, never as an empty one.

Deletes are not fsynced: a delete lost in a crash leaves an orphan object, which GC finds.

All blocking calls run in worker threads under one `trio.CapacityLimiter` per pool.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import trio

from repfs.backend import directio
from repfs.backend.base import PoolUsage, check_range, short_range
from repfs.backend.keys import TEMP_PREFIX, check_key
from repfs.config import PoolSpec
from repfs.errors import ObjectNotFound, PoolFull, PoolUnavailable, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_THREADS = 8
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Reading a "key" that is a directory, or that runs through a file, finds no object.
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(directory: Path) -> tuple[list[str], list[str]]:
    """(file names, subdirectory names) of one directory; temp files left out. The kind
    of an entry comes from the directory itself (no stat per file on Linux filesystems)."""
    files: list[str] = []
    dirs: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.name)
    return files, dirs


def _walk_size(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            files, dirs = _scan(directory)
        except FileNotFoundError:
            continue
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                total += os.stat(directory / name, follow_symlinks=False).st_size
        stack.extend(directory / d for d in dirs)
    return total


class LocalPool:
    """A `Pool` over a local directory (a disk, a mount of a NAS, ...)."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        limiter: trio.CapacityLimiter | None = None,
        create_root: bool = False,
    ) -> None:
        self._name = name
        self._root = Path(os.path.abspath(root))
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(DEFAULT_THREADS)
        self._create_root = create_root
        # Bytes used by objects: None until the first walk. Updated by put and delete under
        # `_lock` (a threading lock: the updates happen in worker threads).
        self._used: int | None = None
        self._lock = threading.Lock()
        self._walk_lock = trio.Lock()
        self._direct = True  # until the filesystem refuses O_DIRECT once

    @classmethod
    def from_spec(
        cls, spec: PoolSpec, *, limiter: trio.CapacityLimiter | None = None, create_root: bool = False
    ) -> LocalPool:
        return cls(spec.name, spec.path, limiter=limiter, create_root=create_root)

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return f"file://{self._root}"

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalPool({self._name!r}, {str(self._root)!r})"

    # --- helpers ------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in one of the pool's worker threads. A caller that gives up (a missed
        deadline) abandons the thread: a hung disk (an NFS server gone, a frozen FUSE mount
        underneath) stalls only its own threads, at most the limiter's count of them, and
        later calls wait for one of those within their own deadline. Every write is a
        temporary file renamed into place, so an abandoned one leaves no partial object."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter, abandon_on_cancel=True)

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def _error(self, exc: OSError, what: str) -> StorageError:
        reason = exc.strerror or exc.__class__.__name__
        if exc.errno in _FULL_ERRNOS:
            return PoolFull(f"pool {self._name} is full: {what}: {reason}")
        return PoolUnavailable(f"pool {self._name}: {what}: {reason}")

    def _check_root(self) -> None:
        """Raise PoolUnavailable unless the root is a directory (called on ENOENT paths)."""
        try:
            st = os.stat(self._root)
        except OSError as exc:
            raise PoolUnavailable(
                f"pool {self._name}: root directory {self._root} is missing or unreadable: {exc.strerror}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise PoolUnavailable(f"pool {self._name}: root {self._root} is not a directory")

    def _make_dirs(self, directory: Path) -> None:
        """Make `directory` and its missing parents below the root, each made durable."""
        if directory == self._root:
            if self._create_root and not self._root.exists():
                self._root.mkdir(parents=True, exist_ok=True)
                _fsync_dir(self._root.parent)
            self._check_root()
            return
        if directory.is_dir():
            return
        self._make_dirs(directory.parent)
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        _fsync_dir(directory.parent)

    # --- the Pool protocol --------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await self._run(self._put_sync, path, data)
        except OSError as exc:
            raise self._error(exc, f"cannot store {key}") from None

    def _put_sync(self, path: Path, data: bytes) -> None:
        self._make_dirs(path.parent)
        tmp = path.parent / f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(6)}"
        try:
            self._write_new(tmp, data)
            with self._lock:
                old = self._size_or_zero(path)
                os.replace(tmp, path)
                if self._used is not None:
                    self._used += len(data) - old
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def _write_new(self, path: Path, data: bytes) -> None:
        """Create `path` holding `data`, fsync'd: past the page cache when it is big enough
        and the filesystem allows (`directio`)."""
        if self._direct and len(data) >= directio.MIN_SIZE:
            try:
                directio.write_new_file(path, data)
                return
            except directio.DirectIOUnsupported:
                self._direct = False
                path.unlink(missing_ok=True)
                log.info("pool %s: %s refuses O_DIRECT; objects go through the page cache", self._name, self._root)
        # os calls, not open(): each system call gives up the GIL and waits for it again,
        # and a file object adds three (fstat, isatty, lseek) that are of no use here
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with memoryview(data) as view:
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
            os.fsync(fd)
            # Its pages, clean now, go back at once: the block cache holds what is read again,
            # and the next object or cache file takes pages just freed, where a fresh one
            # costs a fault of the host on a virtual machine (the page cache of new files ran
            # at 0.4 GB/s there). As large objects skip the page cache (`directio`).
            with contextlib.suppress(OSError):  # advice: a filesystem may not take it
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    @staticmethod
    def _size_or_zero(path: Path) -> int:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await self._run(self._get_sync, path, key)
        except OSError as exc:
            raise self._error(exc, f"cannot read {key}") from None

    def _get_sync(self, path: Path, key: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            if exc.errno not in _ABSENT_ERRNOS:
                raise
        self._check_root()
        raise ObjectNotFound(f"pool {self._name}: no object {key}")

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        path = self._path(key)
        try:
            return await self._run(self._get_range_sync, path, key, offset, length)
        except OSError as exc:
            raise self._error(exc, f"cannot read {key}") from None

    def _get_range_sync(self, path: Path, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.pread(fd, length, offset)  # a regular file gives it all, up to its end
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in _ABSENT_ERRNOS:
                raise
            self._check_root()
            raise ObjectNotFound(f"pool {self._name}: no object {key}") from None
        if len(data) != length:
            raise short_range(self._name, key, offset, length, len(data))
        return data

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await self._run(self._delete_sync, path)
        except OSError as exc:
            raise self._error(exc, f"cannot delete {key}") from None

    def _delete_sync(self, path: Path) -> None:
        try:
            with self._lock:
                old = self._size_or_zero(path)
                path.unlink()
                if self._used is not None:
                    self._used -= old
        except OSError as exc:
            if exc.errno not in _ABSENT_ERRNOS:
                raise
            self._check_root()

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return await self._run(self._exists_sync, path)
        except OSError as exc:
            raise self._error(exc, f"cannot look up {key}") from None

    async def modified(self, key: str) -> float | None:
        path = self._path(key)
        try:
            return await self._run(self._modified_sync, path)
        except OSError as exc:
            raise self._error(exc, f"cannot look up {key}") from None

    def _modified_sync(self, path: Path) -> float | None:
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno not in _ABSENT_ERRNOS:
                raise
            self._check_root()
            return None
        return st.st_mtime if stat.S_ISREG(st.st_mode) else None

    def _exists_sync(self, path: Path) -> bool:
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except OSError as exc:
            if exc.errno not in _ABSENT_ERRNOS:
                raise
        self._check_root()
        return False

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Walk one directory at a time in a worker thread; only directories that can hold
        keys starting with `prefix` are entered."""
        try:
            await self._run(self._check_root)
        except OSError as exc:
            raise self._error(exc, "cannot list") from None
        stack = [""]
        while stack:
            rel = stack.pop()
            directory = self._root / rel if rel else self._root
            try:
                files, dirs = await self._run(_scan, directory)
            except FileNotFoundError:
                continue  # removed while we walked
            except OSError as exc:
                raise self._error(exc, f"cannot list {rel or '/'}") from None
            for name in files:
                key = f"{rel}{name}"
                if key.startswith(prefix):
                    yield key
            for name in dirs:
                sub = f"{rel}{name}/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    stack.append(sub)

    async def usage(self) -> PoolUsage:
        """Bytes in objects (one walk, then a running count kept by put and delete) and the
        size and free space of the filesystem holding the root.

        Writes that run during the first walk may be counted twice or not at all."""
        try:
            if self._used is None:
                async with self._walk_lock:
                    if self._used is None:
                        await self._run(self._check_root)
                        used = await self._run(_walk_size, self._root)
                        with self._lock:
                            self._used = used
            st = await self._run(os.statvfs, self._root)
            dev = (await self._run(os.stat, self._root)).st_dev
        except OSError as exc:
            raise self._error(exc, "cannot read usage") from None
        return PoolUsage(
            used=max(self._used or 0, 0),
            total=st.f_blocks * st.f_frsize,
            free=st.f_bavail * st.f_frsize,
            device=f"local:{dev}",
        )

    async def ping(self) -> None:
        try:
            await self._run(self._ping_sync)
        except OSError as exc:
            raise self._error(exc, "ping failed") from None

    def _ping_sync(self) -> None:
        if self._create_root:
            self._make_dirs(self._root)
        self._check_root()
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise PoolUnavailable(f"pool {self._name}: root directory {self._root} is not writable")

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()
