"""The file operations of the API, done on the mount (call them through `asuser.Workers`,
so they run with the account's credentials and the kernel decides).

Paths are relative to the root of the filesystem (`/alice/docs/a.txt`). They are walked a
component at a time from a descriptor of the mount's root with O_NOFOLLOW: a symbolic
link is never followed, so no request leaves the mount whatever links an account makes.
`..` and empty components are refused.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from repfs.errors import InvalidArgument

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "symlink"}
SORTS = ("name", "size", "mtime", "kind")


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    kind: str  # file, folder, symlink, other
    size: int
    mtime: float
    mode: str
    uid: int
    gid: int
    target: str | None = None  # of a symbolic link

    @property
    def etag(self) -> str:
        return f'"{self.size:x}-{int(self.mtime * 1e9):x}"'


def split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument("'..' is not allowed in a path")
    if "\x00" in path:
        raise InvalidArgument("a path cannot hold a NUL byte")
    if any(len(p.encode()) > 255 for p in parts):
        raise OSError(errno.ENAMETOOLONG, "a name is longer than 255 bytes")
    return parts


def joined(parts: list[str]) -> str:
    return "/" + "/".join(parts)


class Tree:
    """The mounted filesystem, seen from its root."""

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint

    def _root(self, flags: int = os.O_PATH) -> int:
        """A descriptor of the mount's root; ENOTCONN when nothing is mounted there (the
        daemon restarting): never the empty folder below the mount."""
        fd = os.open(self.mountpoint, flags | os.O_DIRECTORY)
        if os.fstat(fd).st_dev == os.stat(os.path.dirname(self.mountpoint.rstrip("/")) or "/").st_dev:
            os.close(fd)
            raise OSError(errno.ENOTCONN, f"the filesystem is not mounted on {self.mountpoint} now")
        return fd

    def _parent(self, parts: list[str]) -> int:
        """A descriptor of the folder holding the last component (the caller closes it)."""
        fd = self._root()
        try:
            for name in parts[:-1]:
                nxt = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _entry(self, parts: list[str], st: os.stat_result, target: str | None = None) -> Entry:
        return Entry(
            name=parts[-1] if parts else "",
            path=joined(parts),
            kind=KINDS.get(stat.S_IFMT(st.st_mode), "other"),
            size=st.st_size,
            mtime=st.st_mtime,
            mode=oct(stat.S_IMODE(st.st_mode)),
            uid=st.st_uid,
            gid=st.st_gid,
            target=target,
        )

    def stat(self, path: str) -> Entry:
        parts = split(path)
        if not parts:
            fd = self._root()
            try:
                return self._entry(parts, os.fstat(fd))
            finally:
                os.close(fd)
        fd = self._parent(parts)
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            target = os.readlink(parts[-1], dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
            return self._entry(parts, st, target)
        finally:
            os.close(fd)

    def listing(self, path: str, *, sort: str = "name", reverse: bool = False) -> list[Entry]:
        """Every entry of a folder, sorted (paging is the caller's: it needs the order)."""
        if sort not in SORTS:
            raise InvalidArgument(f"sort by one of {', '.join(SORTS)}")
        parts = split(path)
        fd = self.open_dir(parts)
        try:
            out = []
            with os.scandir(fd) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # gone meanwhile
                    target = os.readlink(de.name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
                    out.append(self._entry([*parts, de.name], st, target))
        finally:
            os.close(fd)
        key = {"name": lambda e: e.name, "size": lambda e: (e.size, e.name), "mtime": lambda e: (e.mtime, e.name),
               "kind": lambda e: (e.kind != "folder", e.kind, e.name)}[sort]  # fmt: skip
        return sorted(out, key=key, reverse=reverse)

    def page(
        self, path: str, *, sort: str, reverse: bool, offset: int, limit: int, hidden: Callable[[str], bool]
    ) -> tuple[int, list[Entry]]:
        """(how many entries, one page of them) of a folder, without the `hidden` names. By
        name, only the page's entries are looked at (a page of a folder of 10,000 files
        costs its 100 stats, not 10,000); by size or time every entry is."""
        if sort != "name":
            everything = [e for e in self.listing(path, sort=sort, reverse=reverse) if not hidden(e.name)]
            return len(everything), everything[offset : offset + limit]
        parts = split(path)
        fd = self.open_dir(parts)
        try:
            with os.scandir(fd) as it:
                names = sorted((de.name for de in it if not hidden(de.name)), reverse=reverse)
            out = []
            for name in names[offset : offset + limit]:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone meanwhile
                target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
                out.append(self._entry([*parts, name], st, target))
        finally:
            os.close(fd)
        return len(names), out

    def writable(self, path: str) -> bool:
        """Whether the caller may add and remove entries of the folder, as the kernel
        decides it for the caller's credentials (mode, ACLs, shares): what the page shows."""
        fd = self.open_dir(split(path))
        try:
            return os.access(".", os.W_OK | os.X_OK, dir_fd=fd, effective_ids=True)
        finally:
            os.close(fd)

    def open_dir(self, parts: list[str]) -> int:
        if not parts:
            return self._root(os.O_RDONLY)
        fd = self._parent(parts)
        try:
            return os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)

    def open_file(self, path: str, flags: int, mode: int = 0o644) -> int:
        """A descriptor of the regular file at `path` (EISDIR for a folder, ELOOP for a link)."""
        parts = split(path)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "the root is a folder")
        fd = self._parent(parts)
        try:
            # O_NONBLOCK: a FIFO put there must not hold a worker in open() until a writer comes
            out = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(out).st_mode):
            os.close(out)
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        os.set_blocking(out, True)
        return out

    def mkdir(self, path: str, mode: int = 0o755) -> Entry:
        parts = split(path)
        if not parts:
            raise FileExistsError(errno.EEXIST, "the root exists")
        fd = self._parent(parts)
        try:
            os.mkdir(parts[-1], mode, dir_fd=fd)
        finally:
            os.close(fd)
        return self.stat(path)

    def move(self, src: str, dst: str, *, replace: bool = False) -> Entry:
        a, b = split(src), split(dst)
        if not a or not b:
            raise InvalidArgument("the root cannot be moved, nor anything moved onto it")
        fa, fb = self._parent(a), self._parent(b)
        try:
            if not replace:
                try:
                    os.stat(b[-1], dir_fd=fb, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise FileExistsError(errno.EEXIST, f"{dst} exists (ask with replace to replace it)")
            os.rename(a[-1], b[-1], src_dir_fd=fa, dst_dir_fd=fb)
        finally:
            os.close(fa)
            os.close(fb)
        return self.stat(dst)

    def delete(self, path: str) -> None:
        """A file or an empty folder (ENOTEMPTY for another)."""
        parts = split(path)
        if not parts:
            raise PermissionError(errno.EPERM, "the root cannot be deleted")
        fd = self._parent(parts)
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(parts[-1], dir_fd=fd)
            else:
                os.unlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)

    def replace(self, temp: str, path: str) -> None:
        """The finished file `temp` in place of `path`, in one rename: a reader sees the
        old file or the new one, never half. Where the rename is refused (an editor may
        not replace a file another account made: the shares' rule) the old file stays as
        it was; the file is not rewritten in place, which a failure half way would lose."""
        try:
            self.move(temp, path, replace=True)
        except PermissionError:
            raise PermissionError(errno.EPERM, f"{path} may not be replaced by this account (it was made by "
                                  "another account: change it on the mount, or upload it under a new name)") from None


WRITE_BATCH = 256 << 10  # bytes of a body gathered before one write to the mount (one thread hop)


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
