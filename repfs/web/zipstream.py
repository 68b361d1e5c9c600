"""Folders and selections as one zip, made while it is sent (seed 004's download basket).

The zip is written to a `Drain`, which keeps what zipfile wrote until the response takes
it: nothing is held but the chunk on its way, whatever the size. Entries are stored
(not compressed: repfs's blocks are, and most big files are already) with ZIP64 sizes
and data descriptors, as zipfile writes to a stream it cannot seek. Folders are walked
as the account; what it may not read, and symbolic links, are left out (logged).
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Iterator
from typing import IO

from repfs.web import files

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class Drain:
    """A write-only stream zipfile writes to; `take()` empties it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def members(tree: files.Tree, paths: list[str]) -> Iterator[tuple[str, str]]:
    """(path on the mount, name in the zip) of every regular file the selection holds,
    a folder's files under the folder's own name."""
    for path in paths:
        parts = files.split(path)
        entry = tree.stat(path)
        base = parts[-1] if parts else "root"
        if entry.kind == "file":
            yield files.joined(parts), base
        elif entry.kind == "folder":
            todo = [(parts, base)]
            while todo:
                folder, name = todo.pop()
                try:
                    listing = tree.listing(files.joined(folder))
                except PermissionError:
                    log.info("zip: %s left out (not readable)", files.joined(folder))
                    continue
                for e in reversed(listing):
                    if e.kind == "folder":
                        todo.append(([*folder, e.name], f"{name}/{e.name}"))
                    elif e.kind == "file":
                        yield files.joined([*folder, e.name]), f"{name}/{e.name}"


class ZipWriter:
    """One zip being made: each call adds a little and returns the bytes made so far
    (all calls in worker threads, one at a time)."""

    def __init__(self, tree: files.Tree, paths: list[str]) -> None:
        self.tree = tree
        self.drain = Drain()
        self.zip = zipfile.ZipFile(self.drain, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.todo = members(tree, paths)
        self.current: tuple[int, IO[bytes]] | None = None
        self.done = False

    def step(self) -> bytes:
        """Up to a chunk more of the zip; b"" once it is whole."""
        if self.done:
            return b""
        if self.current is None:
            nxt = next(self.todo, None)
            if nxt is None:
                self.zip.close()
                self.done = True
                return self.drain.take()
            path, name = nxt
            try:
                fd = self.tree.open_file(path, os.O_RDONLY)
            except (PermissionError, IsADirectoryError):
                log.info("zip: %s left out (not readable)", path)
                return self.drain.take()
            st = os.fstat(fd)
            info = zipfile.ZipInfo(name, date_time=_date(st.st_mtime))
            info.external_attr = (0o644 & 0xFFFF) << 16
            self.current = (fd, self.zip.open(info, "w", force_zip64=True))
        fd, out = self.current
        chunk = os.read(fd, CHUNK)
        if chunk:
            out.write(chunk)
        else:
            out.close()
            os.close(fd)
            self.current = None
        return self.drain.take()

    def abandon(self) -> None:
        if self.current is not None:
            os.close(self.current[0])
            self.current = None


def _date(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime, 315532800))  # zip's dates start in 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
