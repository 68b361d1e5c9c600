"""Check one file, or every file under a folder: where each block's copies are, and
whether they are there and good (seed 003: "soft: are all shards there; hard: restore
and verify").

Soft asks each pool that should hold a copy whether the object exists; deep reads every
copy and checks it against the digest recorded when it was written. A copy that is
missing or damaged is queued for repair (the block goes on the deficit list and the
repairer is woken); nothing is changed here.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

from repfs.backend.copies import BlockCopies
from repfs.backend.poolset import PoolSet
from repfs.errors import StorageError
from repfs.fs.paths import resolve
from repfs.fs.repair import Repairer
from repfs.meta.store import MetaStore

MAX_FILES = 100_000  # files one check answers for (a folder with more is cut off, and says so)


@dataclass
class BlockCheck:
    index: int
    block: str  # the block id's first 12 hex digits
    copies: dict[str, str]  # pool → "ok", "missing", "damaged: ...", "unreachable: ..."

    @property
    def good(self) -> int:
        return sum(1 for v in self.copies.values() if v == "ok")


@dataclass
class FileCheck:
    path: str
    size: int
    blocks: list[BlockCheck] = field(default_factory=list)


def _files(meta: MetaStore, ino: int, path: str) -> tuple[list[tuple[int, str, int]], bool]:
    """(ino, path, size) of every regular file at or under `ino`, and whether it was cut off."""
    out: list[tuple[int, str, int]] = []
    stack = [(ino, path)]
    with meta.read() as t:
        while stack:
            cur, where = stack.pop()
            inode = t.inode(cur)
            if stat.S_ISREG(inode.mode):
                out.append((cur, where, inode.size))
                if len(out) >= MAX_FILES:
                    return out, True
            elif inode.is_dir:
                for _, name, child in t.entries_from(cur, 0):
                    stack.append((child, f"{where.rstrip('/')}/{name.decode(errors='replace')}"))
    return sorted(out, key=lambda f: f[1]), False


async def check(
    meta: MetaStore,
    pools: PoolSet,
    block_copies: BlockCopies,
    repairer: Repairer,
    path: str,
    *,
    deep: bool = False,
) -> tuple[list[FileCheck], bool, int]:
    """Check `path`: (each file's blocks and copies, whether the list was cut off, blocks queued for repair)."""
    files, cut = _files(meta, resolve(meta, path), "/" + path.strip("/"))
    out: list[FileCheck] = []
    queued: dict[bytes, set[str]] = {}  # block → pools found without a good copy
    for ino, where, size in files:
        report = FileCheck(where, size)
        with meta.read() as t:
            mapped = list(t.blocks_from(ino, 0))
            records = {bid: t.block_record(bid) for _, bid in mapped}
        for index, block_id in mapped:
            rec = records[block_id]
            place = rec.place if rec is not None else None
            targets = pools.targets(block_id) if place is None else ()  # a pack stays where it was put
            wanted = list(dict.fromkeys([*targets, *(rec.pools if rec else ())]))
            copies: dict[str, str] = {}
            for name in wanted:
                if not pools.state(name).serves:
                    copies[name] = f"unreachable: pool is {pools.state(name).value}"
                elif deep and rec is not None:
                    obj, why = await block_copies.read_copy(name, block_id, rec.digest, place)
                    copies[name] = "ok" if obj is not None else ("missing" if why == "missing" else f"damaged: {why}")
                else:
                    try:
                        there = await block_copies.has_copy(name, block_id, place)
                    except StorageError as exc:
                        copies[name] = f"unreachable: {exc}"
                        continue
                    copies[name] = "ok" if there else "missing"
            bad = {n for n, v in copies.items() if v == "missing" or v.startswith("damaged")}
            if bad or sum(1 for v in copies.values() if v == "ok") < pools.replicas:
                queued.setdefault(block_id, set()).update(bad)
            report.blocks.append(BlockCheck(index, block_id.hex()[:12], copies))
        out.append(report)
    if queued:
        with meta.write() as t:
            for block_id, bad in queued.items():
                rec = t.block_record(block_id)
                if rec is not None and bad:  # they hold no good copy: the repair puts one back
                    rec.pools = tuple(p for p in rec.pools if p not in bad)
                    t.put_block_record(block_id, rec)
                t.put("deficit", block_id, b"")
        repairer.wake()
    return out, cut, len(queued)
