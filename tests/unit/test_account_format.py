"""The account record's format (the value of the `accounts` database), pinned: records
written now are read the same by every later version."""

from __future__ import annotations

import dataclasses

import pytest

from repfs.fs.accounts import Account, AccountInvalid, check_email, check_name, parse_date

GOLDEN = (  # version 2 (password_temporary)
    b'{"created": 1764547200, "disabled": false, "email": "alice@example.org", "gid": 1001, '
    b'"name": "alice", "password": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA", '
    b'"password_temporary": true, "uid": 1001, "v": 2, "valid_until": 1798761599}'
)
GOLDEN_V1 = (  # what repfs wrote before version 2: it reads with password_temporary false
    b'{"created": 1764547200, "disabled": false, "email": "alice@example.org", "gid": 1001, '
    b'"name": "alice", "password": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA", "uid": 1001, '
    b'"v": 1, "valid_until": 1798761599}'
)


def test_the_record_is_versioned_json_and_reads_back() -> None:
    account = Account(
        "alice", "alice@example.org", 1001, 1001, created=1764547200, valid_until=parse_date("2026-12-31"),
        password="$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA", password_temporary=True,
    )  # fmt: skip
    assert account.pack() == GOLDEN
    assert Account.unpack(GOLDEN) == account
    assert Account.unpack(GOLDEN_V1) == dataclasses.replace(account, password_temporary=False)
    assert "password" not in account.public() and account.public()["password_set"] is True
    assert "argon2" not in repr(account)


def test_an_unknown_record_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 3"):
        Account.unpack(GOLDEN.replace(b'"v": 2', b'"v": 3'))


def test_names_emails_and_dates_are_checked() -> None:
    for bad in ("", "Alice", "1abc", "a b", "x" * 33, "../etc"):
        with pytest.raises(AccountInvalid):
            check_name(bad)
    check_name("alice_2-b")
    with pytest.raises(AccountInvalid):
        check_email("alice")
    with pytest.raises(AccountInvalid):
        parse_date("31.12.2026")
    assert parse_date("2026-12-31") == 1798761599  # the end of that day, UTC
