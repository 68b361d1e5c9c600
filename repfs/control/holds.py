"""Legal holds as an administrator places and lifts them (`repfs-admin hold ...`).
The rule is in repfs.fs.holds; every change is journaled and audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from repfs.errors import NotADirectory, NotFound, RequestRefused, UnknownName
from repfs.fs import accounts as acc
from repfs.fs import holds
from repfs.fs.audit import Audit
from repfs.fs.paths import path_of, resolve
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldInfo:
    path: str
    reason: str
    by: str
    since: float


def _ino(meta: MetaStore, path: str) -> int:
    try:
        return resolve(meta, path)
    except (NotFound, NotADirectory) as exc:
        raise UnknownName(str(exc)) from None


def add_hold(meta: MetaStore, audit: Audit, path: str, reason: str, *, by_uid: int) -> HoldInfo:
    ino = _ino(meta, path)
    with meta.write() as t:
        if holds.get(t, ino) is not None:
            raise RequestRefused(f"{path} is on hold already")
        account = acc.by_uid(t, by_uid) if by_uid else None
        by = account.name if account is not None else ("root" if by_uid == 0 else f"uid {by_uid}")
        hold = holds.put(t, ino, reason, by)
        where = path_of(t, ino)
    audit.write(by_uid, "hold.add", where, reason=reason)
    log.warning("legal hold placed on %s: %s", where, reason or "(no reason given)")
    return HoldInfo(where, hold.reason, hold.by, hold.since)


def remove_hold(meta: MetaStore, audit: Audit, path: str, *, by_uid: int) -> HoldInfo:
    ino = _ino(meta, path)
    with meta.write() as t:
        hold = holds.get(t, ino)
        if hold is None:
            raise RequestRefused(f"{path} is not on hold")
        holds.delete(t, ino)
        where = path_of(t, ino)
    audit.write(by_uid, "hold.remove", where)
    log.warning("legal hold on %s lifted", where)
    return HoldInfo(where, hold.reason, hold.by, hold.since)


def list_holds(meta: MetaStore) -> list[HoldInfo]:
    with meta.read() as t:
        return [HoldInfo(path_of(t, ino), h.reason, h.by, h.since) for ino, h in holds.every(t)]
