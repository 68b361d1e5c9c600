"""Writing a new file past the page cache (O_DIRECT), for the large objects of local pools.

An object written to a local pool is not read back from that pool soon: the block cache
holds its block. Through the page cache every stored byte costs a kernel copy into a
freshly allocated page, then the writeback during fsync, and the pages then crowd out
what is worth caching. With O_DIRECT the device takes the bytes from our buffer. Measured
on the embedded default (seq-write of 1 GiB, 2 copies of each 4 MiB block): daemon CPU
10.4 -> 7.1 s and 135 -> 183 MB/s.

O_DIRECT wants buffer, offset and length aligned to the device's logical block size; 4 KiB
suits every device. The data is copied into a page-aligned buffer padded with zeros to
4 KiB, and the file is cut back to its length before the fsync. Buffers are kept for the
next write, since a fresh mapping costs a page fault and a zeroed page per 4 KiB.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from pathlib import Path

ALIGN = 4096
MIN_SIZE = 1 << 20  # smaller objects (packs of packets, metadata) go through the page cache
_KEEP = 4  # idle buffers kept: the bound on memory held between writes
_GRAIN = 1 << 20

_free: list[mmap.mmap] = []
_free_lock = threading.Lock()


class DirectIOUnsupported(Exception):
    """The filesystem refuses O_DIRECT (the file was not created, or was removed)."""


def _take(size: int) -> mmap.mmap:
    with _free_lock:
        for i, buf in enumerate(_free):
            if len(buf) >= size:
                return _free.pop(i)
    return mmap.mmap(-1, -(-size // _GRAIN) * _GRAIN)


def _give(buf: mmap.mmap) -> None:
    with _free_lock:
        _free.append(buf)
        if len(_free) <= _KEEP:
            return
        _free.sort(key=len)
        smallest = _free.pop(0)
    smallest.close()


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) holding `data`, written past the page cache, and
    fsync it. Raises DirectIOUnsupported where the filesystem refuses O_DIRECT, OSError for
    anything else; either way the caller removes the file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise DirectIOUnsupported(str(path)) from None
        raise
    n = len(data)
    padded = -(-n // ALIGN) * ALIGN
    buf = _take(padded)
    done = 0
    try:
        buf[:n] = data
        buf[n:padded] = bytes(padded - n)
        with memoryview(buf) as view:
            while done < padded:
                if done % ALIGN:  # a short write left the offset unaligned: finish buffered
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                done += os.write(fd, view[done:padded])
        os.ftruncate(fd, n)
        os.fsync(fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL and done == 0:
            raise DirectIOUnsupported(str(path)) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        _give(buf)
