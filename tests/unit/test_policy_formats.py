"""The records of shares, quotas, usage counters, holds, ingest times, retention rules and
API keys (values of LMDB databases 16-25), pinned: what is written now is read the same by every
later version."""

from __future__ import annotations

from pathlib import Path

import pytest

from repfs.errors import InvalidRequest
from repfs.fs import ingest
from repfs.fs.apikeys import ApiKey
from repfs.fs.holds import Hold
from repfs.fs.quota import Limits
from repfs.fs.retention import Effective, Rule
from repfs.fs.shares import Share
from repfs.meta.records import Inode
from repfs.meta.store import MetaStore

SHARE_KEY = bytes.fromhex("000000000000002a00000000000003e9")  # item 42, grantee uid 1001
SHARE = b'{"by": "alice", "grantee": "bob", "namespace": 7, "role": "editor", "since": 1764547200.5, "v": 1}'
LIMITS_V1 = b'{"max_bytes": 10737418240, "max_files": 100000, "soft_bytes": 8589934592, "v": 1}'
LIMITS = (
    b'{"evict_bytes": 21474836480, "max_bytes": 10737418240, "max_files": 100000, "soft_bytes": 8589934592, "v": 2}'
)
RULE = b'{"by": "root", "max_age": 2592000, "min_age": 86400, "since": 1764547200.0, "v": 1}'
API_KEY_V1 = (
    b'{"account": "alice", "created": 1764547200.0, "digest": "' + b"ab" * 32 + b'", "expires": 0.0, '
    b'"id": "0123456789abcdef", "label": "collector", "ops": ["read", "write"], "paths": ["/alice/packets"], "v": 1}'
)
API_KEY = (
    b'{"account": "alice", "created": 1764547200.0, "digest": "' + b"ab" * 32 + b'", "expires": 0.0, '
    b'"id": "0123456789abcdef", "kind": "cert", "label": "collector", "ops": ["read", "write"], '
    b'"paths": ["/alice/packets"], "v": 2}'
)
HOLD = b'{"by": "root", "reason": "case 42", "since": 1764547200.0, "v": 1}'


def test_records_are_versioned_json_and_read_back() -> None:
    share = Share(42, "bob", 1001, "editor", "alice", 1764547200.5, 7)
    assert share.pack() == SHARE and Share.unpack(SHARE_KEY, SHARE) == share
    limits = Limits(10 << 30, 100_000, 8 << 30, 20 << 30)
    assert limits.pack() == LIMITS and Limits.unpack(LIMITS) == limits
    assert Limits.unpack(LIMITS_V1) == Limits(10 << 30, 100_000, 8 << 30)  # before eviction: none
    rule = Rule(30 * 86400, 86400, "root", 1764547200.0)
    assert rule.pack() == RULE and Rule.unpack(RULE) == rule
    key = ApiKey("0123456789abcdef", "alice", "ab" * 32, ["/alice/packets"], ["read", "write"], "collector",
                 1764547200.0, kind="cert")  # fmt: skip
    assert key.pack() == API_KEY and ApiKey.unpack(API_KEY) == key
    assert ApiKey.unpack(API_KEY_V1) == ApiKey(key.id, key.account, key.digest, key.paths, key.ops, key.label,
                                               key.created)  # a version 1 key is a token  # fmt: skip
    assert key.allows("read", "/alice/packets/p1") and not key.allows("read", "/alice/packets-old/p1")
    assert not key.allows("delete", "/alice/packets/p1")
    hold = Hold("case 42", "root", 1764547200.0)
    assert hold.pack() == HOLD and Hold.unpack(HOLD) == hold


@pytest.mark.parametrize("raw", [SHARE, LIMITS, HOLD, RULE, API_KEY])
def test_an_unknown_version_is_refused(raw: bytes) -> None:
    newer = raw.replace(b'"v": 1', b'"v": 9').replace(b'"v": 2', b'"v": 9')
    with pytest.raises(ValueError, match="version 9"):
        if raw is SHARE:
            Share.unpack(SHARE_KEY, newer)
        elif raw is LIMITS:
            Limits.unpack(newer)
        elif raw is RULE:
            Rule.unpack(newer)
        elif raw is API_KEY:
            ApiKey.unpack(newer)
        else:
            Hold.unpack(newer)


def test_an_ingest_time_and_its_place_in_the_order(tmp_path: Path) -> None:
    """ingest: ino → time ‖ namespace; ingest_order: namespace ‖ time ‖ ino (big-endian u64s)."""
    meta = MetaStore(tmp_path / "meta")
    with meta.write() as t:
        ingest.record(t, Inode(42, 0o100644, 0, 0, 1), 7, 1764547200_000000000)
        ingest.record(t, Inode(43, 0o040755, 0, 0, 2), 7, 1764547200_000000001)  # a folder: not in the order
    with meta.read() as t:
        assert t.get("ingest", bytes.fromhex("000000000000002a")) == bytes.fromhex(
            "187cee5455690000" "0000000000000007"
        )  # fmt: skip
        assert [k.hex() for k, _ in t.scan("ingest_order", b"")] == [
            "0000000000000007" "187cee5455690000" "000000000000002a"
        ]  # fmt: skip
        assert [e.ino for e in ingest.oldest(t, 7)] == [42]
    with meta.write() as t:
        ingest.forget(t, 42)
    with meta.read() as t:
        assert ingest.of(t, 42) is None and list(t.scan("ingest_order", b"")) == []


def test_nested_rules_take_the_shortest_maximum_and_the_longest_minimum() -> None:
    joined = Effective().joined(Rule(30 * 86400, 0)).joined(Rule(7 * 86400, 86400)).joined(Rule(0, 2 * 86400))
    assert joined == Effective(7 * 86400, 2 * 86400)
    with pytest.raises(InvalidRequest, match="minimum age cannot be longer"):
        Rule(86400, 2 * 86400)


def test_the_usage_counter_is_two_big_endian_u64() -> None:
    from repfs.fs import quota

    assert quota._USAGE.pack(5000, 2) == bytes.fromhex("0000000000001388" "0000000000000002")
