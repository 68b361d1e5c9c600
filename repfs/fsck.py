"""`repfs fsck`: check the metadata against itself and against the pools; repair on request.

Checks, in order (each a phase of the progress display):
1. names: every directory entry names an inode that exists and its cookie entry matches;
   link counts match the names; the link table (inode → its names) holds exactly the
   names; inodes no name reaches (and not deleted-while-open) are orphans; each
   namespace's usage counter equals what its tree holds;
2. block references: each block's refcount equals the block-map entries pointing at it;
   a block map entry without a block record is a dangling reference; an unreferenced
   block is listed for garbage collection;
3. pools: every block object on every pool is listed; a copy the metadata does not know
   of is an extra (or orphan, when no record names that block at all); a holder missing
   its copy is a missing copy; a block with no copy anywhere is lost;
4. journal: the segments on the pools follow each other from the newest snapshot on.

`--repair` fixes what can be fixed without losing data: dangling names and cookie
entries are removed, the link table made to match the names, link counts and refcounts
corrected, usage counters set from the trees, orphans moved to
/lost+found, unreferenced objects deleted, missing copies rewritten from good ones
(the repairer), records of lost blocks kept (their files read EIO there, and are named
in the report), and a fresh snapshot closes any journal gap.
"""

from __future__ import annotations

import logging
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from repfs.backend.keys import (
    BLOCK_PREFIX,
    JOURNAL_PREFIX,
    SNAPSHOT_PREFIX,
    block_id_from_key,
    parse_journal_key,
    parse_snapshot_key,
)
from repfs.fs import ingest, quota
from repfs.fs import namespace as ns
from repfs.fs.access import ROOT
from repfs.fs.paths import path_of
from repfs.meta import schema as s
from repfs.meta.records import BlockRecord, Inode

if TYPE_CHECKING:  # mount.py imports much; fsck only needs the type
    from repfs.stack import Layers

log = logging.getLogger(__name__)

LOST_FOUND = b"lost+found"
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class FsckReport:
    dangling_names: list[str] = field(default_factory=list)
    bad_link_counts: list[int] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)
    bad_refcounts: list[str] = field(default_factory=list)
    dangling_blocks: list[str] = field(default_factory=list)  # map entries without a record
    bad_links: list[str] = field(default_factory=list)  # link table rows no name backs, or missing
    bad_usage: list[str] = field(default_factory=list)  # namespaces whose usage counter is off
    bad_ingest: list[str] = field(default_factory=list)  # ingest times missing, or their order off
    unlisted_garbage: list[str] = field(default_factory=list)
    orphan_objects: list[tuple[str, str]] = field(default_factory=list)  # (pool, key)
    missing_copies: list[tuple[str, str]] = field(default_factory=list)  # (pool, block)
    lost_blocks: dict[str, list[str]] = field(default_factory=dict)  # block → paths using it
    journal_gaps: list[str] = field(default_factory=list)
    unreadable_pools: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def problems(self) -> int:
        return sum(
            len(x)
            for x in (
                self.dangling_names,
                self.bad_link_counts,
                self.orphans,
                self.bad_refcounts,
                self.dangling_blocks,
                self.bad_links,
                self.bad_usage,
                self.bad_ingest,
                self.unlisted_garbage,
                self.orphan_objects,
                self.missing_copies,
                self.lost_blocks,
                self.journal_gaps,
            )
        )

    def lines(self) -> list[str]:
        out = []
        for label, items in (
            ("dangling directory entries", self.dangling_names),
            ("wrong link counts (inodes)", self.bad_link_counts),
            ("orphan inodes (no name reaches them)", self.orphans),
            ("wrong block refcounts", self.bad_refcounts),
            ("block map entries without a block record", self.dangling_blocks),
            ("link table rows that differ from the names (where a file lives)", self.bad_links),
            ("namespaces whose usage counter differs from their tree", self.bad_usage),
            ("ingest times missing or out of their order", self.bad_ingest),
            ("unreferenced blocks not yet listed for deletion", self.unlisted_garbage),
            ("objects on pools that no metadata references", self.orphan_objects),
            ("missing copies of blocks", self.missing_copies),
            ("blocks with no copy on any pool", list(self.lost_blocks)),
            ("journal gaps", self.journal_gaps),
        ):
            out.append(f"{label}: {len(items)}")
            out += [f"    {item}" for item in list(items)[:10]]
            if len(items) > 10:
                out.append(f"    ... and {len(items) - 10} more")
        for path_list in list(self.lost_blocks.values())[:10]:
            out += [f"    lost data in: {p}" for p in path_list[:5]]
        if self.unreadable_pools:
            out.append(f"pools that could not be listed (not checked): {', '.join(self.unreadable_pools)}")
        return out


def _path(names: dict[int, tuple[int, bytes]], ino: int) -> str:
    """A path that reaches `ino` (one of them, for hard links)."""
    parts = []
    seen = set()
    while ino != s.ROOT_INO and ino in names and ino not in seen:
        seen.add(ino)
        parent, name = names[ino]
        parts.append(name.decode(errors="replace"))
        ino = parent
    return "/" + "/".join(reversed(parts))


async def fsck(layers: Layers, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
    report = FsckReport()
    meta, poolset, objects = layers.meta, layers.poolset, layers.objects
    note = progress or (lambda phase, done, total: None)

    # --- 1. names ---------------------------------------------------------------------
    with meta.read() as t:
        inodes = {s.from_u64(k): Inode.unpack(s.from_u64(k), v) for k, v in t.scan("inodes", b"")}
        dirents = [(k, v) for k, v in t.scan("dirents", b"")]
        cookies = {k: v for k, v in t.scan("dircookie", b"")}
        open_orphans = {s.from_u64(k) for k, _ in t.scan("orphans", b"")}
        link_rows = {s.parse_link_key(k) for k, _ in t.scan("links", b"")}
    note("names", 0, len(dirents))
    names: dict[int, tuple[int, bytes]] = {}
    links: Counter[int] = Counter()
    subdirs: Counter[int] = Counter()
    dangling: list[tuple[int, bytes, int]] = []
    named: set[tuple[int, int, bytes]] = set()  # (child, parent, name): what the link table should hold
    for i, (k, v) in enumerate(dirents):
        parent, name = s.from_u64(k[:8]), k[8:]
        child, cookie = s.parse_dirent_value(v)
        if child not in inodes or cookies.get(s.cookie_key(parent, cookie)) != name:
            dangling.append((parent, name, cookie))
            report.dangling_names.append(f"{parent}/{name.decode(errors='replace')} -> inode {child}")
            continue
        named.add((child, parent, name))
        names.setdefault(child, (parent, name))
        links[child] += 1
        if inodes[child].is_dir:
            subdirs[parent] += 1
        if i % 1000 == 0:
            note("names", i, len(dirents))
    stale_links, missing_links = link_rows - named, named - link_rows
    for child, parent, name in sorted(stale_links):
        where = f"{parent}/{name.decode(errors='replace')}"
        report.bad_links.append(f"inode {child} listed as {where}, which is not its name")
    for child, parent, name in sorted(missing_links):
        where = f"{parent}/{name.decode(errors='replace')}"
        report.bad_links.append(f"inode {child} is named {where}, not in the link table")
    wanted_nlink = {}
    for ino, inode in inodes.items():
        if ino == s.ROOT_INO:
            want = 2 + subdirs[ino]
        elif inode.is_dir:
            want = 2 + subdirs[ino] if links[ino] else 0
        else:
            want = links[ino]
        if ino != s.ROOT_INO and links[ino] == 0 and ino not in open_orphans:
            report.orphans.append(ino)
        elif inode.nlink != want and not (ino in open_orphans and want == 0):
            report.bad_link_counts.append(ino)
            wanted_nlink[ino] = want

    with meta.read() as t:
        counted = {}
        for k, _ in t.scan("namespaces", b""):
            home = s.from_u64(k)
            kept, real = quota.usage(t, home), quota.recount(t, home)
            if kept.files != real.files or kept.bytes != real.bytes:
                orphaned = [o for o in open_orphans if t.get("orphans", s.inode_key(o)) == s.u64(home)]
                if not orphaned:  # an open, unlinked file still counts: nothing to say then
                    counted[home] = real
                    report.bad_usage.append(f"{path_of(t, home)}: counted {kept}, the tree holds {real}")
        report.bad_ingest = ingest.check(t, inodes)

    # --- 2. block references ------------------------------------------------------------
    with meta.read() as t:
        refs: Counter[bytes] = Counter(v for _, v in t.scan("blockmap", b""))
        records = {k: BlockRecord.unpack(v) for k, v in t.scan("blocks", b"")}
        garbage = {k for k, _ in t.scan("gc", b"")}
        users: dict[bytes, set[int]] = {}
        for k, v in t.scan("blockmap", b""):
            users.setdefault(v, set()).add(s.parse_blockmap_key(k)[0])
    note("blocks", 0, len(records))
    for block_id in refs:
        if block_id not in records:
            report.dangling_blocks.append(block_id.hex()[:12])
    for block_id, rec in records.items():
        if rec.refcount != refs[block_id]:
            report.bad_refcounts.append(f"{block_id.hex()[:12]}: {rec.refcount}, should be {refs[block_id]}")
        if refs[block_id] == 0 and block_id not in garbage:
            report.unlisted_garbage.append(block_id.hex()[:12])

    # --- 3. pools ---------------------------------------------------------------------------
    note("pools", 0, len(poolset.pool_names))
    listed = await objects.list_meta(BLOCK_PREFIX, every_pool=True)
    answered = set()
    for holders in listed.values():
        answered.update(holders)
    on_pools: dict[bytes, set[str]] = {}
    for key, holders in listed.items():
        try:
            block_id = block_id_from_key(key)
        except ValueError:
            continue
        on_pools[block_id] = set(holders)
        if block_id not in records:
            report.orphan_objects += [(p, key) for p in holders]
    journal_objects = await objects.list_meta(JOURNAL_PREFIX, every_pool=True)
    for block_id, rec in records.items():  # a packed block is where its pack is
        if rec.in_pack:
            on_pools[block_id] = set(journal_objects.get(rec.in_pack, ()))
            answered.update(on_pools[block_id])
    report.unreadable_pools = [n for n in poolset.pool_names if n not in answered and records]
    for block_id, rec in records.items():
        if rec.refcount <= 0:
            continue
        have = on_pools.get(block_id, set())
        for p in rec.pools:
            if p not in have and p not in report.unreadable_pools:
                report.missing_copies.append((p, block_id.hex()[:12]))
        if not have:
            report.lost_blocks[block_id.hex()[:12]] = sorted(_path(names, i) for i in users.get(block_id, ()))
    note("pools", len(poolset.pool_names), len(poolset.pool_names))

    # --- 4. journal -----------------------------------------------------------------------
    snaps = await objects.list_meta(SNAPSHOT_PREFIX, every_pool=True)
    newest = max((parse_snapshot_key(k) for k in snaps), default=0)
    segments = []
    for key in journal_objects:
        try:
            segments.append(parse_journal_key(key))
        except ValueError:
            continue
    cursor = newest + 1
    for first, last in sorted(segments):
        if last < cursor:
            continue
        if first > cursor:
            report.journal_gaps.append(f"changes {cursor}..{first - 1} are in no segment")
        cursor = last + 1
    if not snaps:
        report.journal_gaps.append("no snapshot on the pools")
    note("journal", 1, 1)

    if repair and report.problems:
        link_fix = (stale_links, missing_links)
        await _repair(layers, report, dangling, link_fix, wanted_nlink, refs, records, on_pools)
        if counted:
            with meta.write() as t:
                for home, real in counted.items():
                    quota.store(t, home, real)
        if report.bad_ingest:
            with meta.write() as t:
                ingest.check(t, {s.from_u64(k): Inode.unpack(s.from_u64(k), v) for k, v in t.scan("inodes", b"")},
                             repair=True)  # fmt: skip
        report.repaired = True
    return report


async def _repair(
    layers: Layers,
    report: FsckReport,
    dangling: list[tuple[int, bytes, int]],
    links: tuple[set[tuple[int, int, bytes]], set[tuple[int, int, bytes]]],
    wanted_nlink: dict[int, int],
    refs: Counter[bytes],
    records: dict[bytes, BlockRecord],
    on_pools: dict[bytes, set[str]],
) -> None:
    meta, poolset, objects = layers.meta, layers.poolset, layers.objects
    with meta.write() as t:
        for parent, name, cookie in dangling:  # their link rows are among the stale ones
            t.delete("dirents", s.dirent_key(parent, name))
            t.delete("dircookie", s.cookie_key(parent, cookie))
        stale, missing = links
        for child, parent, name in stale:
            t.delete("links", s.link_key(child, parent, name))
        for child, parent, name in missing:
            t.put("links", s.link_key(child, parent, name), b"")
        for ino, want in wanted_nlink.items():
            inode = t.inode(ino)
            inode.nlink = want
            t.put_inode(inode)
        if report.orphans:
            lost = t.lookup(s.ROOT_INO, LOST_FOUND)
            if lost is None:
                made = ns.create_node(t, ROOT, s.ROOT_INO, LOST_FOUND, stat.S_IFDIR | 0o700)
                ingest.record(t, made, None, made.ctime_ns)
                lost = made.ino
            for ino in report.orphans:
                inode = t.inode(ino)
                t.add_entry(lost, f"#{ino}".encode(), ino)
                inode.nlink = 2 if inode.is_dir else 1
                t.put_inode(inode)
                if inode.is_dir:
                    t.put("parents", s.u64(ino), s.u64(lost))
                    lost_dir = t.inode(lost)
                    lost_dir.nlink += 1
                    t.put_inode(lost_dir)
        for block_id, rec in records.items():
            fixed = False
            if rec.refcount != refs[block_id]:
                rec.refcount = refs[block_id]
                fixed = True
            have = on_pools.get(block_id, set())
            if have and set(rec.pools) != have:
                ranked = poolset.ranked(rec.in_pack.encode() if rec.in_pack else block_id)
                rec.pools = tuple(n for n in ranked if n in have)  # what is really there
                t.put("deficit", block_id, b"")
                fixed = True
            if fixed:
                t.put_block_record(block_id, rec)
            if rec.refcount <= 0:
                t.put("gc", block_id, b"")
    for pool, key in report.orphan_objects:
        try:
            await objects.delete_meta(key, [pool])
        except Exception as exc:  # noqa: BLE001 - one object's failure must not stop the repair
            log.warning("cannot delete orphan object %s on pool %s: %s", key, pool, exc)
    await layers.repairer.repair_pending()
    if report.journal_gaps:
        await layers.journal.snapshot_now()
