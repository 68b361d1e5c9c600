"""Rebuilding metadata from the pools: the newest snapshot that reads, then the journal.

`rebuild` makes a whole new metadata directory (for `repfs recover` on a fresh host).
`catch_up` runs at every mount: if the pools' journal is ahead of the local metadata
(another host went on after this one stopped, or the host crashed and lost its last
local commits), the missing change sets are applied; if the local metadata holds
changes the pools never got and the pools went on without them, the two histories
differ and the mount is refused rather than mixing them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from repfs.backend.keys import JOURNAL_PREFIX, SNAPSHOT_PREFIX, block_key, parse_journal_key, parse_snapshot_key
from repfs.backend.metaobjects import MetaObjects
from repfs.blocks import packs
from repfs.errors import CorruptObject, ReadFailed, SetupError, StorageError
from repfs.journal import snapshot
from repfs.journal.pack import decode_pack, is_pack
from repfs.journal.segment import Segment, decode_segment
from repfs.journal.writer import JournalWriter
from repfs.meta import schema as s
from repfs.meta.records import BlockRecord
from repfs.meta.store import MetaStore, Txn

log = logging.getLogger(__name__)


class MetaCodec(Protocol):
    def encode_meta(self, name: str, plaintext: bytes) -> bytes: ...
    def decode_meta(self, name: str, obj: bytes) -> bytes: ...


async def resolve_pending(meta: MetaStore, store: MetaObjects) -> tuple[int, int]:
    """Blocks whose map reached the journal but not the news of their copies (the host
    died while storing them): find their copies; a block stored nowhere becomes a hole in
    the files that held it, so no name ever leads to a missing object. Returns (found, lost)."""
    with meta.read() as t:
        pending = [k for k, v in t.scan("blocks", b"") if (r := BlockRecord.unpack(v)).refcount > 0 and not r.pools]
    found = lost = 0
    for block_id in pending:
        key = block_key(block_id)
        holders = (await store.list_meta(key, every_pool=True)).get(key, [])
        with meta.env.begin(write=True) as txn:
            t = Txn(txn, meta.dbs)
            rec = t.block_record(block_id)
            if rec is None:
                continue
            if holders:
                rec.pools = tuple(holders)
                t.put_block_record(block_id, rec)
                t.put("deficit", block_id, b"")
                found += 1
                continue
            users = [k for k, v in t.scan("blockmap", b"") if v == block_id]
            for k in users:
                t.delete("blockmap", k)
            t.delete("blocks", block_id)
            lost += 1
            log.warning(
                "block %s was being stored when the host stopped and is on no pool: inodes %s read zeros there",
                block_id.hex()[:12],
                sorted({s.parse_blockmap_key(k)[0] for k in users}),
            )
    return found, lost


@dataclass
class Replayed:
    snapshot_seq: int = 0
    last_seq: int = 0
    change_sets: int = 0
    segments: int = 0
    written_ns: int = 0  # when the last applied segment was written (0: none applied)
    gap_after: int | None = None  # a segment beyond this point exists but the next one is missing
    damaged: list[str] = field(default_factory=list)


def _decode_segment(codec: MetaCodec, key: str, obj: bytes) -> Segment:
    if is_pack(obj):  # a segment that carries blocks: its index is the segment
        return decode_pack(key, obj, codec).segment
    return decode_segment(codec.decode_meta(key, obj), where=key)


def _apply(meta: MetaStore, seg: Segment, after: int) -> int:
    """Apply the change sets of `seg` with seq > `after`, in one transaction; returns how many."""
    applied = 0
    with meta.env.begin(write=True) as txn:
        for cs in seg.sets:
            if cs.seq <= after:
                continue
            for db, key, value in cs.changes:
                if value is None:
                    txn.delete(key, db=meta.dbs[db])
                else:
                    txn.put(key, value, db=meta.dbs[db])
            applied += 1
            txn.put(s.META_JOURNAL_SEQ, s.u64(cs.seq), db=meta.dbs["meta"])
            txn.put(s.META_JOURNAL_STORED, s.u64(cs.seq), db=meta.dbs["meta"])
    meta.seq = max(meta.seq, seg.sets[-1].seq)
    return applied


def _locate(meta: MetaStore, chosen: tuple[str, list[str]], seg: Segment) -> int:
    """The blocks a pack carries whose records name no place yet (the host stopped after the
    pack was stored and before their records said so): they are in it. Returns how many."""
    key, holders = chosen
    found = 0
    with meta.env.begin(write=True) as txn:
        t = Txn(txn, meta.dbs)
        for f in seg.frames:
            rec = t.block_record(f.block_id)
            if rec is None or rec.pools or rec.in_pack or rec.stored_size != f.length:
                continue
            rec.pools, rec.in_pack, rec.offset = tuple(holders), key, f.offset
            t.put_block_record(f.block_id, rec)
            packs.recorded(t, key, f.length)
            found += 1
    return found


async def apply_journal(
    meta: MetaStore,
    store: MetaObjects,
    codec: MetaCodec,
    *,
    progress: Callable[[int, int], None] | None = None,
    every_pool: bool = True,
) -> Replayed:
    """Apply every journal segment after the metadata's own sequence number, in order
    (from every pool that answers, or only from those that serve)."""
    out = Replayed(snapshot_seq=meta.seq, last_seq=meta.seq)
    listed = await store.list_meta(JOURNAL_PREFIX, every_pool=every_pool)
    ranges = []
    for key, holders in listed.items():
        try:
            first, last = parse_journal_key(key)
        except ValueError:
            continue
        ranges.append((first, last, key, holders))
    todo = [r for r in ranges if r[1] > meta.seq]
    total = max((r[1] for r in todo), default=meta.seq) - meta.seq
    while True:
        cursor = out.last_seq + 1
        covering = sorted((r for r in ranges if r[0] <= cursor <= r[1]), key=lambda r: -r[1])
        seg = None
        chosen: tuple[str, list[str]] = ("", [])
        for _first, _last, key, holders in covering:
            try:
                seg = await store.get_meta(key, holders, functools.partial(_decode_segment, codec, key))
                chosen = (key, holders)
                break
            except (ReadFailed, CorruptObject) as exc:
                out.damaged.append(f"{key}: {exc}")
                log.error("journal segment %s cannot be read from any pool: %s", key, exc)
        if seg is None:
            if any(r[0] > cursor for r in ranges):
                out.gap_after = out.last_seq
            break
        out.change_sets += _apply(meta, seg, out.last_seq)
        if seg.frames:
            _locate(meta, chosen, seg)
        out.segments += 1
        out.last_seq = seg.sets[-1].seq
        out.written_ns = seg.written_ns
        if progress:
            progress(out.last_seq - out.snapshot_seq, total)
    return out


async def rebuild(
    meta_dir: Path,
    store: MetaObjects,
    journal_source: MetaObjects,
    codec: MetaCodec,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Replayed:
    """A new metadata directory from the newest readable snapshot and the journal after it."""
    listed = await store.list_meta(SNAPSHOT_PREFIX, every_pool=True)
    snaps = sorted(((parse_snapshot_key(k), k) for k in listed), reverse=True)
    damaged = []
    chosen = 0
    for seq, key in snaps:
        try:
            data = await store.get_meta(key, listed[key], functools.partial(codec.decode_meta, key))
        except (ReadFailed, CorruptObject) as exc:
            damaged.append(f"{key}: {exc}")
            log.error("snapshot %s cannot be read from any pool: %s", key, exc)
            continue
        snapshot.install(data, meta_dir)
        chosen = seq
        break
    else:
        raise SetupError(
            "no readable metadata snapshot on any pool"
            + (f" ({len(damaged)} damaged)" if damaged else "")
            + "; is this the right pool configuration?"
        )
    meta = MetaStore(meta_dir)
    try:
        with meta.env.begin(write=True) as txn:
            txn.put(s.META_JOURNAL_STORED, s.u64(meta.seq), db=meta.dbs["meta"])
        out = await apply_journal(meta, journal_source, codec, progress=progress)
        await resolve_pending(meta, journal_source)
        out.snapshot_seq = chosen
        out.damaged = damaged + out.damaged
        meta.sync()
    finally:
        meta.close()
    return out


async def catch_up(meta: MetaStore, journal: JournalWriter, store: MetaObjects, codec: MetaCodec) -> None:
    """At mount: bring the local metadata and the pools' journal to the same point (asking
    only the pools that serve: those unreachable at mount are down already)."""
    listed = await store.list_meta(JOURNAL_PREFIX)
    pools_last = 0
    for key in listed:
        try:
            pools_last = max(pools_last, parse_journal_key(key)[1])
        except ValueError:
            continue
    if pools_last > meta.seq:
        if journal.stored < meta.seq:
            raise SetupError(
                f"the local metadata (up to change {meta.seq}, of which {journal.stored} reached the pools) "
                f"and the pools' journal (up to change {pools_last}) went different ways: another host "
                "used this filesystem after this one stopped uncleanly. Run 'repfs recover --force' to take "
                "the pools' version (this host's unsaved changes are lost)"
            )
        out = await apply_journal(meta, store, codec, every_pool=False)
        if out.gap_after is not None or out.last_seq < pools_last:
            raise SetupError(
                f"the pools' journal is ahead of the local metadata (change {pools_last} vs {meta.seq}) but "
                f"cannot be applied from change {out.last_seq + 1}; run 'repfs recover --force'"
            )
        journal.stored = meta.seq
        log.warning("applied %d change sets from the pools' journal (now at change %d)", out.change_sets, meta.seq)
    snapshots = await store.list_meta(SNAPSHOT_PREFIX)
    if meta.seq > journal.stored or not snapshots:
        # changes that never reached the pools (a crash), or no snapshot yet: one now
        try:
            await journal.snapshot_now()
        except StorageError as exc:
            raise SetupError(f"cannot store a metadata snapshot on the pools: {exc}") from None
