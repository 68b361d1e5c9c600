"""Retention rules: how long files may live, and how long they must stay.

A rule on a folder (a namespace, any folder in one, or `/` for the whole filesystem)
applies to every file in it, also to files made there later. `max_age`: a file whose
ingest time (`repfs.fs.ingest`) is older is deleted by the sweeper (`repfs.fs.expiry`);
`min_age`: a file younger than it is never evicted for space. Where rules nest, the
shortest maximum and the longest minimum apply, so a rule on `/` is a filesystem-wide
maximum nobody below can lengthen. A legal hold (`repfs.fs.holds`) beats every rule.

A default rule (kept in `meta`) is given to each new namespace when its account is made.

| database | key | value |
|---|---|---|
| retention | folder ino (u64; 1 is `/`) | `Rule` (versioned JSON) |
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from repfs.errors import InvalidRequest
from repfs.fs import folders, shares
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

RECORD_VERSION = 1
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Rule:
    max_age: int = 0  # seconds; 0: files may live for ever
    min_age: int = 0  # seconds; 0: no file is kept from eviction
    by: str = "root"
    since: float = 0.0

    def __post_init__(self) -> None:
        if self.max_age < 0 or self.min_age < 0:
            raise InvalidRequest("an age cannot be negative")
        if self.max_age and self.min_age > self.max_age:
            raise InvalidRequest("the minimum age cannot be longer than the maximum age")

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> Rule:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version != RECORD_VERSION:
            raise ValueError(f"retention record version {version} is not known")
        return cls(**data)


@dataclass(frozen=True)
class Effective:
    """What the rules on a folder and above it say together (0: nothing)."""

    max_age: int = 0
    min_age: int = 0

    def joined(self, other: Rule | Effective | None) -> Effective:
        if other is None:
            return self
        ages = [a for a in (self.max_age, other.max_age) if a]
        return Effective(min(ages) if ages else 0, max(self.min_age, other.min_age))


NONE = Effective()


def any_rules(t: Txn) -> bool:
    return next(t.scan("retention", b""), None) is not None


def get(t: Txn, folder: int) -> Rule | None:
    raw = t.get("retention", s.u64(folder))
    return Rule.unpack(raw) if raw is not None else None


def put(t: Txn, folder: int, rule: Rule) -> Rule:
    placed = Rule(rule.max_age, rule.min_age, rule.by, rule.since or time.time())
    t.put("retention", s.u64(folder), placed.pack())
    return placed


def delete(t: Txn, folder: int) -> bool:
    return t.delete("retention", s.u64(folder))


def every(t: Txn) -> list[tuple[int, Rule]]:
    return [(s.from_u64(k), Rule.unpack(v)) for k, v in t.scan("retention", b"")]


def default(t: Txn) -> Rule | None:
    raw = t.get("meta", s.META_RETENTION_DEFAULT)
    return Rule.unpack(raw) if raw is not None else None


def set_default(t: Txn, rule: Rule | None) -> None:
    if rule is None:
        t.delete("meta", s.META_RETENTION_DEFAULT)
    else:
        placed = Rule(rule.max_age, rule.min_age, rule.by, rule.since or time.time())
        t.put("meta", s.META_RETENTION_DEFAULT, placed.pack())


def folder_rules(t: Txn, folder: int) -> Effective:
    """The rules on `folder`, the folders above it and `/`, together (memoized)."""
    top = NONE.joined(get(t, s.ROOT_INO))
    return folders.inherited(t, folder, "retention", top, lambda f, above: above.joined(get(t, f)))


def applying(t: Txn, inode: Inode) -> Effective:
    """The rules that apply to `inode`: for a file with several names, every folder it is
    in counts (the shortest maximum, the longest minimum)."""
    if not any_rules(t):
        return NONE
    if inode.is_dir:
        return folder_rules(t, inode.ino)
    out = NONE
    for parent in shares.parents_of(t, inode):
        out = out.joined(folder_rules(t, parent))
    return out


def expired(rules: Effective, ingest_ns: int, now_ns: int) -> bool:
    return bool(rules.max_age) and ingest_ns < now_ns - rules.max_age * NS_PER_S


def retained(rules: Effective, ingest_ns: int, now_ns: int) -> bool:
    """Still under its minimum age: kept from eviction."""
    return bool(rules.min_age) and ingest_ns >= now_ns - rules.min_age * NS_PER_S
