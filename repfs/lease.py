"""The mount lease: one host at a time mounts a filesystem read-write.

A `lease` object on every pool says who holds the filesystem (host, process, mount id)
and until when. A mount takes the lease only when nobody else holds it, or the holder's
lease has expired and the operator says to take over (`--take-over`), or the operator
breaks it outright (`--break-lease`: for a holder known to be dead). A lease left by a
crashed mount of the same FS_DIR on the same host is taken over at once (the caller
holds FS_DIR's lock, so that daemon is gone). While mounted the
daemon renews it every `ttl / 3` seconds, and deletes it at a clean unmount.

Object stores give no compare-and-swap, so taking the lease is write-then-check: the
new lease is written, and after a pause read back from every pool; if another host's
lease is found there, the later writer backs off. The lease is encrypted and
authenticated like all metadata, so nobody without the key can forge one.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Protocol

import trio

from repfs.backend.keys import LEASE_KEY
from repfs.backend.metaobjects import MetaObjects
from repfs.errors import CorruptObject, ReadFailed, SetupError, StorageError

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0
SETTLE = 0.3  # seconds between writing a new lease and checking nobody else wrote one


class LeaseCodec(Protocol):
    def encode_meta(self, name: str, plaintext: bytes) -> bytes: ...
    def decode_meta(self, name: str, obj: bytes) -> bytes: ...


@dataclass(frozen=True)
class Lease:
    holder: str  # a fresh id per mount
    host: str
    pid: int
    fs_dir: str
    expires: float  # unix time

    def describe(self) -> str:
        until = datetime.datetime.fromtimestamp(self.expires).astimezone().isoformat(timespec="seconds")
        return f"host {self.host} (pid {self.pid}, {self.fs_dir}), lease valid until {until}"

    @property
    def expired(self) -> bool:
        return time.time() > self.expires


class LeaseHeld(SetupError):
    """Another host holds the filesystem's lease."""


class MountLease:
    def __init__(self, store: MetaObjects, codec: LeaseCodec, fs_dir: str, *, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.codec = codec
        self.ttl = ttl
        self.mine = Lease(uuid.uuid4().hex, socket.gethostname(), os.getpid(), fs_dir, 0.0)
        self.lost = False

    async def current(self) -> list[Lease]:
        """The leases the pools hold now (one per distinct holder), unreadable ones skipped."""
        found: dict[str, Lease] = {}
        for name, obj in (await self.store.get_meta_each(LEASE_KEY)).items():
            try:
                lease = Lease(**json.loads(self.codec.decode_meta(LEASE_KEY, obj)))
            except (CorruptObject, ValueError, TypeError) as exc:
                log.warning("pool %s holds an unreadable lease: %s", name, exc)
                continue
            if lease.holder not in found or found[lease.holder].expires < lease.expires:
                found[lease.holder] = lease
        return list(found.values())

    async def _write(self) -> None:
        lease = Lease(**{**asdict(self.mine), "expires": time.time() + self.ttl})
        obj = self.codec.encode_meta(LEASE_KEY, json.dumps(asdict(lease)).encode())
        await self.store.put_meta(LEASE_KEY, obj)
        self.mine = lease

    def _others(self, leases: list[Lease]) -> list[Lease]:
        return [lease for lease in leases if lease.holder != self.mine.holder]

    async def acquire(self, *, take_over: bool = False, break_lease: bool = False) -> None:
        others = self._others(await self.current())
        for other in others:
            if other.host == self.mine.host and other.fs_dir == self.mine.fs_dir:
                # the caller holds FS_DIR's lock, so that mount's daemon is gone (a crash)
                log.info("taking over the lease of an earlier mount here that stopped uncleanly")
            elif break_lease:
                log.warning("breaking the lease of %s", other.describe())
            elif other.expired and take_over:
                log.warning("taking over the expired lease of %s", other.describe())
            elif other.expired:
                raise LeaseHeld(
                    f"the filesystem was mounted by {other.describe()}, which has expired: if that mount is "
                    "gone (a crash), mount with --take-over"
                )
            else:
                raise LeaseHeld(
                    f"the filesystem is mounted by {other.describe()}; unmount it there first. If that host "
                    "is dead, wait until the lease expires and mount with --take-over, or mount now with "
                    "--break-lease"
                )
        try:
            await self._write()
        except StorageError as exc:
            raise SetupError(f"cannot store the mount lease on the pools: {exc}") from None
        await trio.sleep(SETTLE)  # let a racing writer's lease land, then look
        # a rival is a holder that appeared meanwhile, or one taken over above that renewed
        # its lease meanwhile (it was alive after all); not the same old copy of one taken
        # over, which may linger on a pool that does not serve now
        seen = {other.holder: other.expires for other in others}
        rivals = [
            x for x in self._others(await self.current())
            if not x.expired and (x.holder not in seen or x.expires > seen[x.holder])
        ]  # fmt: skip
        if rivals and not break_lease:
            raise LeaseHeld(f"another host took the lease at the same time: {rivals[0].describe()}")
        log.info("mount lease taken (%s)", self.mine.holder)

    async def release(self) -> None:
        try:
            if not self._others(await self.current()):
                holders = (await self.store.list_meta(LEASE_KEY, every_pool=True)).get(LEASE_KEY, [])
                await self.store.delete_meta(LEASE_KEY, holders)
        except (StorageError, ReadFailed) as exc:
            log.warning("cannot release the mount lease (it expires by itself): %s", exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: renew the lease; complain loudly if another host took it."""
        task_status.started()
        while True:
            await trio.sleep(self.ttl / 3)  # the renewal period, not synchronisation
            try:
                others = [lease for lease in self._others(await self.current()) if not lease.expired]
                if others and not self.lost:
                    self.lost = True
                    log.critical(
                        "another host took this filesystem's lease (%s); stop one of the two mounts now",
                        others[0].describe(),
                    )
                await self._write()
            except StorageError as exc:
                log.error("cannot renew the mount lease: %s", exc)
