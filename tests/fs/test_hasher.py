"""The content hasher against the core: files changed other than in order get their hash
in the background, also when they change again while the hasher reads them."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from repfs.fs.hasher import Hasher
from repfs.fs.ratelimit import RateLimit
from repfs.meta import schema as s
from repfs.meta.schema import ROOT_INO
from tests.fs.rig import BS, ROOT, Rig

pytestmark = pytest.mark.trio


class GatedRate(RateLimit):
    """No limit, but the `stop_at`-th take waits until the test opens the gate: the hasher
    is held in the middle of reading a file."""

    def __init__(self, stop_at: int) -> None:
        super().__init__(None)
        self.takes = 0
        self.stop_at = stop_at
        self.reached = trio.Event()
        self.gate = trio.Event()

    async def take(self, nbytes: int) -> None:
        self.takes += 1
        if self.takes == self.stop_at:
            self.reached.set()
            await self.gate.wait()
        await super().take(nbytes)


async def written_out_of_order(rig: Rig, ino: int, content: bytes) -> None:
    fh = await rig.fs.open(ROOT, ino, os.O_RDWR)
    await rig.fs.write(fh, BS, content[BS:])  # the second block first: the running hash stops
    await rig.fs.write(fh, 0, content[:BS])
    await rig.fs.fsync(fh)
    rig.fs.release(fh)


def recorded(rig: Rig, ino: int) -> bytes | None:
    with rig.meta.read() as t:
        return t.get("file_hash", s.inode_key(ino))


async def test_a_file_changed_while_the_hasher_reads_it_is_hashed_after_its_close(
    rig: Rig, nursery: trio.Nursery
) -> None:
    fh, inode = rig.fs.create(ROOT, ROOT_INO, b"f", 0o644, os.O_RDWR)
    rig.fs.release(fh)
    first = os.urandom(2 * BS)
    await written_out_of_order(rig, inode.ino, first)
    assert recorded(rig, inode.ino) is None  # pending: the hasher reads it

    pace = GatedRate(stop_at=2)  # held after the first of the file's two blocks
    hasher = Hasher(rig.meta, rig.fs, rig.fs.hashes, rate=None)
    hasher.pace = pace
    await nursery.start(hasher.run)
    with trio.fail_after(10):
        await pace.reached.wait()
    second = os.urandom(2 * BS)
    await written_out_of_order(rig, inode.ino, second)  # its close announces it while the round reads
    pace.gate.set()  # the round's read is stale now: it records nothing

    want = rig.fs.hashes.mac(hashlib.sha256(second).digest())
    with trio.fail_after(10):  # the announcement was not lost: far sooner than the 60 s idle look
        while recorded(rig, inode.ino) != want:  # noqa: ASYNC110 - the metadata has no event to wait on
            await trio.sleep(0.01)
    assert hasher.hashed == 1
    with rig.meta.read() as t:
        assert t.get("hash_pending", s.inode_key(inode.ino)) is None
        assert [s.from_u64(k[32:]) for k, _ in t.scan("content_hash", want)] == [inode.ino]
