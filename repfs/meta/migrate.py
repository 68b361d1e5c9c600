"""Bring the metadata of an older filesystem up to this version's schema, at mount.

Each step derives its rows from what the metadata holds, in bounded transactions that
are not journaled (they can be millions of rows), and the schema version is written last,
also unjournaled: a crash in between repeats the step. The next metadata snapshot carries
both to the pools; a copy recovered from an older snapshot and the journal has the older
version and is migrated again, so derived rows and version never part.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from repfs.errors import SetupError
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

BATCH = 10_000  # entries per transaction


def schema_version(meta: MetaStore) -> int:
    with meta.read() as t:
        raw = t.get("meta", s.META_SCHEMA)
    return s.from_u64(raw) if raw else 1


def migrate(
    meta: MetaStore,
    *,
    count_usage: Callable[[MetaStore], int],
    record_ingest: Callable[[MetaStore], int],
    pend_hashes: Callable[[MetaStore], int],
) -> bool:
    """Bring the metadata to this version's schema; whether anything changed.
    `count_usage` fills the usage counters from the trees (its unit is the filesystem
    layer's, repfs.fs.quota), `record_ingest` the ingest times (repfs.fs.ingest),
    `pend_hashes` marks the files whose content hash is to be read (repfs.fs.contenthash)."""
    version = schema_version(meta)
    if version > s.SCHEMA_VERSION:
        raise SetupError(
            f"the metadata is schema version {version}, newer than this repfs knows ({s.SCHEMA_VERSION}): upgrade repfs"
        )
    if version < 2:
        built = _build_links(meta)
        log.info("metadata schema 1 -> 2: %d names recorded in the link table", built)
    if version < 3:
        counted = count_usage(meta)
        log.info("metadata schema 2 -> 3: the usage of %d namespaces counted", counted)
    if version < 4:
        recorded = record_ingest(meta)
        log.info("metadata schema 3 -> 4: %d inodes given their ctime as ingest time", recorded)
    if version < 5:
        marked = pend_hashes(meta)
        log.info("metadata schema 4 -> 5: %d files to hash in the background", marked)
    if version < s.SCHEMA_VERSION:
        with meta.write_unjournaled() as t:
            t.put("meta", s.META_SCHEMA, s.u64(s.SCHEMA_VERSION))
        return True
    return False


def _build_links(meta: MetaStore) -> int:
    built = 0
    start: bytes | None = None
    while True:
        with meta.read() as t:
            batch = list(itertools.islice(t.scan("dirents", b"", start=start), BATCH + 1))
        if start is not None and batch and batch[0][0] == start:
            batch = batch[1:]
        if not batch:
            return built
        with meta.write_unjournaled() as t:
            for key, value in batch:
                parent, name = s.from_u64(key[:8]), key[8:]
                child, _ = s.parse_dirent_value(value)
                t.put("links", s.link_key(child, parent, name), b"")
        built += len(batch)
        start = batch[-1][0]
