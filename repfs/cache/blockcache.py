"""The block cache: local files holding the blocks of open and recently used files.

Each cached block is one file, `dirty/<ino>-<index>` or `clean/<ino>-<index>`. A dirty
block holds writes not yet stored on the pools; it survives a crash of the daemon and
is uploaded at the next mount (`recover_dirty`). Clean blocks are a read cache, evicted
least-recently-used first when the cache is over its size.

The cache knows nothing of pools or encryption: it calls down into the block layer
(`repfs.blocks.layer.BlockSource`) to fetch a block's bytes and to store dirty ones. A
block's file may be shorter than the block: the rest reads as zeros (up to the file's
size, which the core clamps to).

A block fetched for a streaming reader (`streaming`: the core asks it for one that reads a
file too big to keep in order) is held in memory instead, up to `max_memory` bytes of such
blocks, and forgotten when that fills: the reader takes it once, and writing 4 MiB into a
cache file only to read it back at once was the biggest cost of a cold sequential read.
A write to such a block puts it in a file first, as dirty blocks are.

A block that a writer filled in order (`write(..., in_order=True)` up to the block's end)
is not kept once stored: the next reader of such a file, if any, mostly reads it in order
too and is streamed from the pools, and keeping it would push out of the cache what
others read. Partial blocks (small files, a file's tail) and blocks written out of order
are kept.

Spares: the file of a block not kept (or evicted, or dropped), if at least a quarter of a
block, is zeroed and kept in `spare/`, up to `max_spare` bytes (an eighth of the cache at
most, which the cache's files may pass `max_bytes` by), and a new block takes a spare
before it makes a file. Writing into the page cache of new files was most of the CPU a
big write cost where memory had not been touched for a while (a virtual machine whose
host takes freed memory back faults on every fresh page: 0.4 GB/s against 14 GB/s for an
overwrite, issue 21); a spare's pages are resident. A spare reads as zeros, as a new file
does, but may be longer than its block's data: a block's size is its entry's, never its
file's (`recover_dirty` cuts a file left longer).

Write-back: the `run` service uploads blocks that have not been written for
`idle_seconds`, and anything when the dirty bytes pass half of `max_dirty`. Writers wait
(never fail) while the dirty bytes are over `max_dirty`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from repfs.blocks.layer import BlockSource
from repfs.errors import RepfsError
from repfs.inline import INLINE_BYTES

log = logging.getLogger(__name__)

Key = tuple[int, int]


@dataclass
class _Drops:
    count: int = 0  # drops of the inode's blocks since its first fetch in flight began
    fetching: int = 0


@dataclass(eq=False)
class Entry:
    ino: int
    index: int
    size: int
    dirty: bool = False
    generation: int = 0
    last_write: float = 0.0
    uploading: trio.Event | None = None
    dropped: bool = False
    waiters: int = field(default=0)
    data: bytes | None = None  # a clean block held in memory only (fetched for a sequential reader)
    in_order: bool = False  # filled by a writer in order: not kept once stored


class BlockCache:
    def __init__(
        self,
        root: Path,
        *,
        block_size: int,
        max_bytes: int,
        max_dirty: int,
        blocks: BlockSource,
        uploads: int = 4,
        idle_seconds: float = 1.0,
        max_memory: int = 32 << 20,
        max_spare: int = 64 << 20,
    ) -> None:
        self.root = root
        self.block_size = block_size
        self.max_bytes = max_bytes
        self.max_dirty = max(max_dirty, 2 * block_size)
        self.blocks = blocks
        self.idle_seconds = idle_seconds
        self.max_memory = min(max_memory, max_bytes // 4)  # of clean blocks held in memory only
        self.memory_bytes = 0
        self.upload_limiter = trio.CapacityLimiter(uploads)
        self.entries: OrderedDict[Key, Entry] = OrderedDict()  # LRU order, oldest first
        # The dirty entries, least recently written first, and the full ones among them
        # (uploaded at once): write-back looks at these, never at the whole cache.
        self.dirty: OrderedDict[Key, Entry] = OrderedDict()
        self._full: dict[Key, Entry] = {}
        self.by_ino: dict[int, set[int]] = {}
        self.dirty_bytes = 0
        self.clean_bytes = 0
        self.upload_errors = 0
        self._fetching: dict[Key, trio.Event] = {}
        self._drops: dict[int, _Drops] = {}  # inodes with fetches in flight: drops meanwhile
        self._room = trio.Event()
        self._wake_writeback = trio.Event()
        self._nursery: trio.Nursery | None = None
        for sub in ("dirty", "clean", "spare"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._dirs = {False: str(root / "clean"), True: str(root / "dirty")}
        self.max_spare = min(max_spare, max_bytes // 8)  # bytes of zeroed files kept for new blocks
        self._spare_dir = str(root / "spare")
        self._spares: list[tuple[int, int]] = []  # (number, length) of the files ready in spare/
        self._spare_bytes = 0  # of those ready and those being zeroed
        self._spare_seq = 0
        self.spares_taken = 0
        self.spares_zeroing = 0  # files being zeroed in worker threads
        self._zeroed = trio.Event()  # set each time none is left being zeroed

    # --- paths and bookkeeping -------------------------------------------------------
    def _path(self, e: Entry | Key, dirty: bool | None = None) -> Path:
        ino, index = (e.ino, e.index) if isinstance(e, Entry) else e
        d = e.dirty if dirty is None and isinstance(e, Entry) else bool(dirty)
        return self.root / ("dirty" if d else "clean") / f"{ino}-{index}"

    def _file(self, e: Entry) -> str:
        """`_path(e)` as a string, for the per-request paths (a Path costs more than the read)."""
        return f"{self._dirs[e.dirty]}/{e.ino}-{e.index}"

    def _add(self, e: Entry) -> None:
        self.entries[(e.ino, e.index)] = e
        self.by_ino.setdefault(e.ino, set()).add(e.index)
        if e.dirty:
            self.dirty_bytes += e.size
            self.dirty[(e.ino, e.index)] = e
        else:
            self.clean_bytes += e.size

    def _forget(self, e: Entry) -> None:
        key = (e.ino, e.index)
        if self.entries.get(key) is e:
            del self.entries[key]
            idx = self.by_ino.get(e.ino)
            if idx is not None:
                idx.discard(e.index)
                if not idx:
                    del self.by_ino[e.ino]
        if self.dirty.get(key) is e:
            del self.dirty[key]
            self._full.pop(key, None)
        if e.dirty:
            self.dirty_bytes -= e.size
        else:
            self.clean_bytes -= e.size
        if e.data is not None:
            self.memory_bytes -= e.size
            e.data = None
        e.dropped = True

    def _resize(self, e: Entry, size: int) -> None:
        if e.dirty:
            self.dirty_bytes += size - e.size
        else:
            self.clean_bytes += size - e.size
        e.size = size

    def _make_dirty(self, e: Entry) -> None:
        if not e.dirty:
            if e.data is not None:  # held in memory only: a file from now on
                _write_file(self._path(e, True), e.data)
                self.memory_bytes -= e.size
                e.data = None
            else:
                os.replace(self._path(e, False), self._path(e, True))
            self.clean_bytes -= e.size
            self.dirty_bytes += e.size
            e.dirty = True
        e.generation += 1
        e.last_write = time.monotonic()
        key = (e.ino, e.index)
        self.dirty[key] = e
        self.dirty.move_to_end(key)

    def cached(self, ino: int, index: int) -> bool:
        return (ino, index) in self.entries

    def indexes(self, ino: int) -> list[int]:
        return sorted(self.by_ino.get(ino, ()))

    def dirty_indexes(self, ino: int) -> list[int]:
        """The indexes of the inode's blocks written here and not stored yet."""
        return [i for i in self.by_ino.get(ino, ()) if self.entries[(ino, i)].dirty]

    def dirty_blocks(self) -> int:
        """How many blocks are waiting to be stored."""
        return len(self.dirty)

    def has_dirty(self, ino: int) -> bool:
        return any(self.entries[(ino, i)].dirty for i in self.by_ino.get(ino, ()))

    # --- loading --------------------------------------------------------------------
    async def _load(self, ino: int, index: int, *, holes: bool = True, streaming: bool = False) -> Entry | None:
        """The entry of a block, fetched from the pools if not cached.

        A hole gets an empty entry when `holes` is true (a write will fill it), else None:
        reading a huge sparse file must not fill the cache with empty entries. `streaming`:
        for a sequential reader; a fetched block is then held in memory if there is room.
        """
        key = (ino, index)
        while True:
            e = self.entries.get(key)
            if e is not None:
                self.entries.move_to_end(key)
                return e
            pending = self._fetching.get(key)
            if pending is None:
                break
            await pending.wait()
        done = self._fetching[key] = trio.Event()
        drops = self._drops.setdefault(ino, _Drops())
        drops.fetching += 1
        try:
            while True:
                seen = drops.count
                data = await self.blocks.fetch(ino, index)
                if key in self.entries:  # a writer created it meanwhile: theirs is newer
                    return self.entries[key]
                if drops.count != seen:  # truncated or deleted meanwhile: what we got may be gone
                    continue
                if data is None and not holes:
                    return None
                if streaming and data is not None and len(data) <= self.max_memory:
                    e = Entry(ino, index, len(data), data=data)
                    self._add(e)
                    self.memory_bytes += e.size
                    self._forget_memory()
                    self._evict()
                    return e
                # Written beside its place (megabytes in a worker thread, not on the event
                # loop), then put in place unless a writer made the block meanwhile.
                path = self._path(key, False)
                temp = path.with_name(f".fetch-{path.name}")
                # into a spare if there is one and the block is as big as spares are (their
                # pages are resident); a small one inline, a thread hop costs more
                big = data is not None and 4 * len(data) >= self.block_size
                if data is not None and big and (spare := self._take_spare(str(temp))) is not None:
                    if len(data) <= INLINE_BYTES:
                        _fill_spare(spare, data)
                    else:
                        await trio.to_thread.run_sync(_fill_spare, spare, data)
                elif data is None or len(data) <= INLINE_BYTES:
                    _write_file(temp, data or b"")
                else:
                    await trio.to_thread.run_sync(_write_file, temp, data)
                if key in self.entries:
                    temp.unlink(missing_ok=True)
                    return self.entries[key]
                if drops.count != seen:
                    temp.unlink(missing_ok=True)
                    continue
                os.replace(temp, path)
                e = Entry(ino, index, len(data) if data else 0)
                self._add(e)
                self._evict()
                return e
        finally:
            drops.fetching -= 1
            if not drops.fetching:
                del self._drops[ino]
            del self._fetching[key]
            done.set()

    async def _load_entry(self, ino: int, index: int) -> Entry:
        e = await self._load(ino, index, holes=True)
        assert e is not None
        return e

    def prefetch(self, ino: int, index: int, *, streaming: bool = False) -> None:
        """Start loading a block in the background (read-ahead); never waits. `streaming`:
        for a sequential reader (see `_load`)."""
        key = (ino, index)
        if key in self.entries or key in self._fetching or self._nursery is None:
            return
        if self.dirty_bytes + (len(self._fetching) + 1) * self.block_size > self.max_bytes:
            return  # clean blocks make room (they are evicted); dirty ones and fetches do not
        self._nursery.start_soon(self._prefetch, ino, index, streaming)

    async def _prefetch(self, ino: int, index: int, streaming: bool) -> None:
        try:
            await self._load(ino, index, holes=False, streaming=streaming)
        except RepfsError as exc:  # the real read will report it
            log.debug("read-ahead of inode %d block %d failed: %s", ino, index, exc)

    # --- the data path ----------------------------------------------------------------
    async def read(self, ino: int, index: int, offset: int, length: int, *, streaming: bool = False) -> bytes:
        """`length` bytes of a block from `offset`, zero-filled past the stored data.
        `streaming`: for a sequential reader (see `_load`)."""
        e = await self._load(ino, index, holes=False, streaming=streaming)
        if e is None or offset >= e.size:
            return bytes(length)
        if e.data is not None:
            data = e.data[offset : offset + length]
        else:
            fd = os.open(self._file(e), os.O_RDONLY)
            try:
                data = os.pread(fd, length, offset)
            finally:
                os.close(fd)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    async def write(
        self, ino: int, index: int, offset: int, data: bytes | memoryview, *, stored: int, in_order: bool = False
    ) -> None:
        """Write into a block. `stored`: bytes of stored data a partial write must keep.
        `in_order`: the writer goes on from where its last write ended (see the module)."""
        await self._wait_for_room(len(data))
        key = (ino, index)
        e = self.entries.get(key)
        fd: int | None = None
        if e is None:
            if stored > 0 and not (offset == 0 and len(data) >= stored):
                e = await self._load_entry(ino, index)
            else:
                e = self.entries.get(key)
                if e is None:
                    e = Entry(ino, index, 0, dirty=True)
                    # An empty file in the cache dir, made inline like the pwrite below: an
                    # await between the lookup and _add would let a concurrent write or fetch
                    # of this block make it too (and this truncate would then lose its data).
                    # Its descriptor takes the pwrite: one open per new block, not two.
                    fd = self._take_spare(self._file(e))
                    if fd is None:
                        fd = os.open(self._file(e), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
                    self._add(e)
        try:
            self._make_dirty(e)
            if fd is None:
                fd = os.open(self._file(e), os.O_WRONLY)
            os.pwrite(fd, data, offset)
        finally:
            if fd is not None:
                os.close(fd)
        before = e.size
        self._resize(e, max(e.size, offset + len(data)))
        e.in_order = in_order and offset + len(data) == self.block_size
        self.entries.move_to_end(key)
        if before < self.block_size <= e.size:  # just filled (a writer moving on): store it now
            self._full[key] = e
            self._wake_writeback.set()
        elif self.dirty_bytes > self.max_dirty // 2:
            self._wake_writeback.set()

    async def truncate(self, ino: int, index: int, length: int, *, stored: int) -> None:
        """Cut a block's data to `length` bytes (what lies beyond reads as zeros)."""
        key = (ino, index)
        e = self.entries.get(key)
        if e is None:
            if stored <= length:
                return
            e = await self._load_entry(ino, index)
        if e.size <= length:
            return
        self._make_dirty(e)
        os.truncate(self._path(e), length)
        self._resize(e, length)

    def drop(self, ino: int, first_index: int = 0) -> None:
        """Forget the cached blocks of `ino` from `first_index` on, dirty or not (and what
        fetches of its blocks bring back, which may be the dropped content)."""
        drops = self._drops.get(ino)
        if drops is not None:
            drops.count += 1
        for index in [i for i in self.by_ino.get(ino, ()) if i >= first_index]:
            e = self.entries[(ino, index)]
            path, size, busy = self._file(e), e.size, e.uploading is not None or e.data is not None
            self._forget(e)
            if busy:  # an upload may be reading the file: it must not be refilled meanwhile
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                self._recycle(path, size)
        self._notify()

    def _forget_memory(self) -> None:
        """Forget the least recently used blocks held in memory only until they fit in
        `max_memory`: a sequential reader has passed them (one that comes back fetches again)."""
        for e in self._oldest(self.memory_bytes - self.max_memory, lambda e: e.data is not None):
            self._forget(e)

    def _oldest(self, need: int, eligible: Callable[[Entry], bool]) -> list[Entry]:
        """The least recently used `eligible` entries (none being fetched) whose sizes add up
        to `need` bytes, chosen walking from the oldest only as far as needed."""
        victims: list[Entry] = []
        for key, e in self.entries.items():
            if need <= 0:
                break
            if eligible(e) and key not in self._fetching:
                victims.append(e)
                need -= e.size
        return victims

    def _evict(self) -> None:
        """Drop the least recently used clean blocks until the cache fits. The victims are
        chosen first, walking from the oldest only as far as needed: this runs after every
        upload, and copying the whole table each time cost most of the daemon's CPU with
        many writers and a full cache (bench/web.py's load)."""
        for e in self._oldest(self.clean_bytes + self.dirty_bytes - self.max_bytes, lambda e: not e.dirty):
            in_memory, path, size = e.data is not None, self._file(e), e.size
            self._forget(e)
            if not in_memory:
                self._recycle(path, size)

    # --- spares: zeroed files whose pages are resident, for new blocks --------------------
    def _take_spare(self, file: str) -> int | None:
        """A descriptor of `file` made from a spare (it reads as zeros), or None if there is none."""
        while self._spares:
            n, length = self._spares.pop()
            self._spare_bytes -= length
            try:
                os.rename(f"{self._spare_dir}/{n}", file)
                fd = os.open(file, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as exc:  # the cache dir changed behind us: make a new file instead
                log.debug("spare %d not taken: %s", n, exc)
                continue
            self.spares_taken += 1
            return fd
        return None

    def _recycle(self, file: str, size: int) -> None:
        """The file of a block no longer cached: a spare once zeroed, if there is room, else gone."""
        # under a quarter of a block, a new file costs less than zeroing this one in a worker thread
        if self._nursery is None or 4 * size < self.block_size or self._spare_bytes + size > self.max_spare:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file)
            return
        self._spare_seq += 1
        n = self._spare_seq
        temp = f"{self._spare_dir}/.zeroing-{n}"
        try:
            os.rename(file, temp)
        except FileNotFoundError:
            return
        self._spare_bytes += size
        self.spares_zeroing += 1
        self._nursery.start_soon(self._zero_spare, n, temp, size)

    async def _zero_spare(self, n: int, temp: str, size: int) -> None:
        try:
            length = await trio.to_thread.run_sync(_zero_file, temp, self.block_size)
        except OSError as exc:
            log.debug("spare %d dropped: %s", n, exc)
            length = None
        finally:
            self.spares_zeroing -= 1
            if not self.spares_zeroing:
                self._zeroed.set()
                self._zeroed = trio.Event()
        if length is None:
            self._spare_bytes -= size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            return
        try:
            os.rename(temp, f"{self._spare_dir}/{n}")
        except OSError:
            self._spare_bytes -= size
            return
        self._spare_bytes += length - size
        self._spares.append((n, length))

    @property
    def spare_bytes(self) -> int:
        """Bytes of the spares, ready or being zeroed."""
        return self._spare_bytes

    async def spares_settled(self) -> None:
        """Return once no spare is being zeroed."""
        while self.spares_zeroing:
            await self._zeroed.wait()

    # --- write-back -------------------------------------------------------------------
    def _notify(self) -> None:
        """Wake writers waiting for room in the cache."""
        self._room.set()
        self._room = trio.Event()

    async def _wait_for_room(self, nbytes: int) -> None:
        while self.dirty_bytes + nbytes > self.max_dirty and self.dirty_bytes > 0:
            self._wake_writeback.set()
            await self._room.wait()

    async def _upload(self, e: Entry) -> None:
        """Store one dirty block; it stays dirty if written again meanwhile."""
        while e.uploading is not None:
            await e.uploading.wait()
        if not e.dirty or e.dropped:
            return
        e.uploading = trio.Event()
        try:
            async with self.upload_limiter:
                if e.dropped:
                    return
                generation = e.generation
                path = self._path(e)
                if e.size <= INLINE_BYTES:  # a page-cache read: cheaper than a worker thread
                    data = _read_file(path, e.size)
                else:
                    data = await trio.to_thread.run_sync(_read_file, path, e.size)
                if data is None:  # dropped while we waited
                    return
                await self.blocks.store(e.ino, e.index, data, lambda: not e.dropped)
                if e.generation == generation and not e.dropped:
                    key = (e.ino, e.index)
                    del self.dirty[key]
                    self._full.pop(key, None)
                    if e.in_order:  # not kept: its file becomes a spare for a writer's next block
                        self._forget(e)
                        self._recycle(str(path), e.size)
                        return
                    os.replace(self._path(e, True), self._path(e, False))
                    self.dirty_bytes -= e.size
                    self.clean_bytes += e.size
                    e.dirty = False
                    self._evict()
        finally:
            ev, e.uploading = e.uploading, None
            ev.set()
            self._notify()

    async def flush(self, ino: int) -> None:
        """Store every dirty block of `ino` on the pools; raise if one fails."""
        while True:
            dirty = [self.entries[(ino, i)] for i in self.indexes(ino) if self.entries[(ino, i)].dirty]
            if not dirty:
                return
            async with trio.open_nursery() as n:
                for e in dirty:
                    n.start_soon(self._upload, e)

    async def flush_all(self) -> None:
        while True:
            inos = [ino for ino in list(self.by_ino) if self.has_dirty(ino)]
            if not inos:
                return
            async with trio.open_nursery() as n:
                for ino in inos:
                    n.start_soon(self.flush, ino)

    def kick(self) -> None:
        """Ask the write-back service to look at dirty blocks now."""
        self._wake_writeback.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The write-back service: runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    with trio.move_on_after(self.idle_seconds / 2):
                        await self._wake_writeback.wait()
                    self._wake_writeback = trio.Event()
                    self._start_uploads(nursery)
            finally:
                self._nursery = None

    def _start_uploads(self, nursery: trio.Nursery) -> None:
        """Upload full blocks, blocks idle for `idle_seconds`, and everything under pressure."""
        full, self._full = list(self._full.values()), {}
        for e in full:
            if e.uploading is None:
                nursery.start_soon(self._upload_logged, e)
        pressure = self.dirty_bytes > self.max_dirty // 2
        idle_before = time.monotonic() - self.idle_seconds
        # Least recently written first, and no copy of the table: this runs at every close
        # (a kick), mostly stops at the first entry, and start_soon runs no task meanwhile
        # (copying a few hundred entries each time was 8% of the event loop in an rsync).
        for e in self.dirty.values():
            if not pressure and e.last_write > idle_before:
                break
            if e.uploading is None:
                nursery.start_soon(self._upload_logged, e)

    async def _upload_logged(self, e: Entry) -> None:
        try:
            await self._upload(e)
        except RepfsError as exc:
            self.upload_errors += 1
            log.error("upload of inode %d block %d failed, will retry: %s", e.ino, e.index, exc)

    # --- start-up -----------------------------------------------------------------------
    def recover_dirty(self, live: Callable[[int, int], int]) -> int:
        """Adopt dirty blocks left by a crashed daemon; `live(ino, index)` says how many of a
        block's bytes lie within its file now (0: none, the block is dropped).

        A file longer than that (a spare's zeros past the data, or bytes past a file's end)
        is cut to it. Returns the number adopted; clean leftovers and spares are removed
        (clean ones may be stale).
        """
        for sub in ("clean", "spare"):
            for p in (self.root / sub).iterdir():
                p.unlink()
        adopted = 0
        for p in (self.root / "dirty").iterdir():
            try:
                ino_s, index_s = p.name.split("-")
                ino, index = int(ino_s), int(index_s)
            except ValueError:
                p.unlink()
                continue
            keep = min(live(ino, index), self.block_size)
            if keep <= 0:
                p.unlink()
                continue
            size = p.stat().st_size
            if size > keep:
                os.truncate(p, keep)
                size = keep
            e = Entry(ino, index, size, dirty=True, generation=1)
            self._add(e)
            adopted += 1
        return adopted


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _fill_spare(fd: int, data: bytes) -> None:
    """Write `data` into a spare (a descriptor of it) and cut the spare to its length; closes `fd`."""
    try:
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], done)
        os.ftruncate(fd, len(data))  # nothing past the block's data: its file is its size
    finally:
        os.close(fd)


def _read_file(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of a cache file (a spare may hold zeros past them)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.pread(fd, size, 0)
        if len(data) < size:  # short reads of a regular file come only at its end
            data += bytes(size - len(data))
        return data
    finally:
        os.close(fd)


_ZEROS = bytes(1 << 20)


def _zero_file(path: str, limit: int) -> int | None:
    """Overwrite a file with zeros (its pages stay resident); its length, or None if it is
    longer than `limit` (not a block's file: it is not kept)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        length = os.fstat(fd).st_size
        if length > limit:
            return None
        view = memoryview(_ZEROS)
        pos = 0
        while pos < length:
            pos += os.pwrite(fd, view[: min(len(view), length - pos)], pos)
        return length
    finally:
        os.close(fd)
