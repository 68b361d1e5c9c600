"""Retention rules as an administrator sets them (`repfs-admin retention ...`), and what
the sweeper says of them. The rule is in repfs.fs.retention, the removal in
repfs.fs.expiry; every change is journaled and audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from repfs.errors import InvalidRequest, NotADirectory, NotFound, RequestRefused, UnknownName
from repfs.fs import accounts as acc
from repfs.fs import retention
from repfs.fs.audit import Audit
from repfs.fs.expiry import Expirer
from repfs.fs.paths import path_of, resolve
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleInfo:
    path: str  # "/" for the whole filesystem, "" for the default of new namespaces
    max_age: int
    min_age: int
    by: str
    since: float


@dataclass(frozen=True)
class RetentionStatus:
    rules: list[RuleInfo]
    default: RuleInfo | None
    next_run: float | None  # unix time; None: no rules
    running: bool
    interval: float
    last_finished: float
    last_removed: int
    last_skipped: int
    removed_since_mount: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DryRunResult:
    would_delete: int
    paths: list[str]  # the first ones
    held: int


def _by(meta: MetaStore, uid: int) -> str:
    with meta.read() as t:
        account = acc.by_uid(t, uid) if uid else None
    return account.name if account is not None else ("root" if uid == 0 else f"uid {uid}")


def _folder(meta: MetaStore, path: str) -> int:
    try:
        ino = resolve(meta, path)
    except (NotFound, NotADirectory) as exc:
        raise UnknownName(str(exc)) from None
    with meta.read() as t:
        if not t.inode(ino).is_dir:
            raise InvalidRequest(f"{path} is not a folder: a retention rule applies to a folder and what is in it")
    return ino


def _info(path: str, rule: retention.Rule) -> RuleInfo:
    return RuleInfo(path, rule.max_age, rule.min_age, rule.by, rule.since)


def set_rule(
    meta: MetaStore, audit: Audit, expirer: Expirer, path: str | None, *, max_age: int, min_age: int, by_uid: int
) -> RuleInfo:
    """A rule on the folder `path` (None: the default for new namespaces)."""
    if not max_age and not min_age:
        raise InvalidRequest("give a maximum age, a minimum age or both (to remove a rule: retention clear)")
    rule = retention.Rule(max_age, min_age, _by(meta, by_uid))
    ino = _folder(meta, path) if path is not None else None
    with meta.write() as t:
        if ino is None:
            retention.set_default(t, rule)
            placed, where = retention.default(t), ""
        else:
            placed, where = retention.put(t, ino, rule), path_of(t, ino)
    assert placed is not None
    audit.write(by_uid, "retention.set", where or None, max_age=max_age, min_age=min_age)
    log.warning("retention on %s: files older than %ss deleted, younger than %ss kept from eviction",
                where or "new namespaces", max_age or "-", min_age or "-")  # fmt: skip
    expirer.rules_changed()
    return _info(where, placed)


def clear_rule(meta: MetaStore, audit: Audit, expirer: Expirer, path: str | None, *, by_uid: int) -> RuleInfo:
    ino = _folder(meta, path) if path is not None else None
    with meta.write() as t:
        if ino is None:
            old, where = retention.default(t), ""
            retention.set_default(t, None)
        else:
            old, where = retention.get(t, ino), path_of(t, ino)
            retention.delete(t, ino)
    if old is None:
        raise RequestRefused(f"{path or 'new namespaces'} has no retention rule")
    audit.write(by_uid, "retention.clear", where or None)
    log.warning("retention rule on %s removed", where or "new namespaces")
    expirer.rules_changed()
    return _info(where, old)


def status(meta: MetaStore, expirer: Expirer) -> RetentionStatus:
    with meta.read() as t:
        rules = [_info(path_of(t, ino), rule) for ino, rule in retention.every(t)]
        default = retention.default(t)
    st = expirer.state()
    return RetentionStatus(
        rules=sorted(rules, key=lambda r: r.path),
        default=_info("", default) if default is not None else None,
        next_run=expirer.next_run(),
        running=st.running,
        interval=expirer.interval,
        last_finished=st.finished,
        last_removed=st.last_removed,
        last_skipped=st.last_skipped,
        removed_since_mount=dict(expirer.removed),
    )


async def dry_run(expirer: Expirer) -> DryRunResult:
    found = await expirer.sweep(dry_run=True)
    return DryRunResult(found.count, found.paths, found.held)


def run_now(expirer: Expirer) -> RetentionStatus:
    expirer.run_now()
    return status(expirer.meta, expirer)
