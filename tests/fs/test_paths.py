"""The link table: every name of every inode, kept by each change of the tree, rebuilt for
an older filesystem at mount; paths for audit records come from it."""

from __future__ import annotations

import os

import pytest

from repfs.errors import SetupError
from repfs.fs import contenthash, ingest, quota
from repfs.fs.paths import child_path, path_of
from repfs.meta import schema as s
from repfs.meta.migrate import migrate, schema_version
from repfs.meta.records import Inode
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import ROOT, Rig, write_file

pytestmark = pytest.mark.trio


def paths(rig: Rig, ino: int) -> str:
    with rig.meta.read() as t:
        return path_of(t, ino)


async def test_paths_follow_creates_links_renames_and_unlinks(rig: Rig) -> None:
    a = rig.fs.mkdir(ROOT, ROOT_INO, b"a", 0o755)
    b = rig.fs.mkdir(ROOT, a.ino, b"b", 0o755)
    f = await write_file(rig, b"f", b"data", parent=b.ino)
    assert paths(rig, f) == "/a/b/f" and paths(rig, b.ino) == "/a/b" and paths(rig, ROOT_INO) == "/"
    rig.fs.link(ROOT, f, ROOT_INO, b"hard")
    with rig.meta.read() as t:
        assert sorted(t.links_of(f)) == sorted([(b.ino, b"f"), (ROOT_INO, b"hard")])
        assert child_path(t, b.ino, b"new") == "/a/b/new"
    rig.fs.rename(ROOT, a.ino, b"b", ROOT_INO, b"moved", 0)
    rig.fs.unlink(ROOT, ROOT_INO, b"hard")
    assert paths(rig, f) == "/moved/f"
    fh = await rig.fs.open(ROOT, f, os.O_RDONLY)
    rig.fs.unlink(ROOT, b.ino, b"f")
    assert paths(rig, f) == f"<unlinked>/{f}"  # open, no name left
    rig.fs.release(fh)


async def test_an_older_filesystem_gets_its_link_table_at_mount(rig: Rig) -> None:
    d = rig.fs.mkdir(ROOT, ROOT_INO, b"d", 0o755)
    for i in range(25):
        await write_file(rig, f"f{i}".encode(), b"x", parent=d.ino)
    with rig.meta.read() as t:
        before = dict(t.scan("links", b""))
        ingested = dict(t.scan("ingest", b""))
        ordered = dict(t.scan("ingest_order", b""))
    assert len(before) == 26 and len(ingested) == 26 and len(ordered) == 25
    with rig.meta.write() as t:  # what a filesystem made before the link table and ingest times looks like
        for key in before:
            t.delete("links", key)
        for key in ingested:
            t.delete("ingest", key)
        for key in ordered:
            t.delete("ingest_order", key)
        for db in ("content_hash", "file_hash", "hash_pending"):  # and before content hashes
            for key, _ in list(t.scan(db, b"")):
                t.delete(db, key)
        t.put("meta", s.META_SCHEMA, s.u64(1))
    import repfs.meta.migrate as m

    old_batch, m.BATCH = m.BATCH, 7  # several transactions
    try:
        migrate(rig.meta, count_usage=quota.count_all, record_ingest=ingest.record_all,
                pend_hashes=contenthash.pend_all)  # fmt: skip
    finally:
        m.BATCH = old_batch
    with rig.meta.read() as t:
        assert dict(t.scan("links", b"")) == before
        rebuilt = {s.from_u64(k): ingest.of(t, s.from_u64(k)) for k in ingested}
        assert {ino: e.time_ns for ino, e in rebuilt.items() if e} == {ino: t.inode(ino).ctime_ns for ino in rebuilt}
        assert len(dict(t.scan("ingest_order", b""))) == 25  # the 25 files, in time order
        regular = {s.from_u64(k) for k, v in t.scan("inodes", b"") if Inode.unpack(s.from_u64(k), v).is_reg}
        assert regular and {s.from_u64(k) for k, _ in t.scan("hash_pending", b"")} == regular  # the hasher reads them
    assert schema_version(rig.meta) == s.SCHEMA_VERSION
    with rig.meta.write() as t:
        t.put("meta", s.META_SCHEMA, s.u64(s.SCHEMA_VERSION + 1))
    with pytest.raises(SetupError, match="newer than this repfs"):
        migrate(rig.meta, count_usage=quota.count_all, record_ingest=ingest.record_all,
                pend_hashes=contenthash.pend_all)  # fmt: skip
