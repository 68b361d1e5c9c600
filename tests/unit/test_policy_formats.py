"""The records of shares, quotas, usage counters and holds (values of LMDB databases 16-21),
pinned: what is written now is read the same by every later version."""

from __future__ import annotations

import pytest

from repfs.fs.holds import Hold
from repfs.fs.quota import Limits
from repfs.fs.shares import Share

SHARE_KEY = bytes.fromhex("000000000000002a00000000000003e9")  # item 42, grantee uid 1001
SHARE = b'{"by": "alice", "grantee": "bob", "namespace": 7, "role": "editor", "since": 1764547200.5, "v": 1}'
LIMITS = b'{"max_bytes": 10737418240, "max_files": 100000, "soft_bytes": 8589934592, "v": 1}'
HOLD = b'{"by": "root", "reason": "case 42", "since": 1764547200.0, "v": 1}'


def test_records_are_versioned_json_and_read_back() -> None:
    share = Share(42, "bob", 1001, "editor", "alice", 1764547200.5, 7)
    assert share.pack() == SHARE and Share.unpack(SHARE_KEY, SHARE) == share
    limits = Limits(10 << 30, 100_000, 8 << 30)
    assert limits.pack() == LIMITS and Limits.unpack(LIMITS) == limits
    hold = Hold("case 42", "root", 1764547200.0)
    assert hold.pack() == HOLD and Hold.unpack(HOLD) == hold


@pytest.mark.parametrize("raw", [SHARE, LIMITS, HOLD])
def test_an_unknown_version_is_refused(raw: bytes) -> None:
    newer = raw.replace(b'"v": 1', b'"v": 2')
    with pytest.raises(ValueError, match="version 2"):
        if raw is SHARE:
            Share.unpack(SHARE_KEY, newer)
        elif raw is LIMITS:
            Limits.unpack(newer)
        else:
            Hold.unpack(newer)


def test_the_usage_counter_is_two_big_endian_u64() -> None:
    from repfs.fs import quota

    assert quota._USAGE.pack(5000, 2) == bytes.fromhex("0000000000001388" "0000000000000002")
