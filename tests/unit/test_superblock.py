"""Superblock: creation, unlock, passphrase change, and parsing what a pool returns."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from repfs.codec.keys import KdfParams
from repfs.codec.superblock import FORMAT_VERSION, Superblock
from repfs.errors import CorruptObject, SetupError, WrongPassphrase


def cheap() -> KdfParams:
    return KdfParams.new(n=2**10)


def make(secret: bytes = b"correct horse") -> tuple[Superblock, bytes]:
    return Superblock.create(secret, 4 << 20, kdf=cheap())


def test_create_and_unlock() -> None:
    sb, key = make()
    assert len(key) == 32
    assert str(uuid.UUID(sb.fs_uuid)) == sb.fs_uuid
    assert sb.format_version == FORMAT_VERSION == 1
    assert sb.block_size == 4 << 20 and sb.created_ns > 0
    assert sb.unlock(b"correct horse") == key
    other, other_key = make()
    assert other.fs_uuid != sb.fs_uuid and other_key != key


def test_wrong_passphrase() -> None:
    sb, _ = make()
    for wrong in (b"Correct horse", b"", b"correct horse "):
        with pytest.raises(WrongPassphrase, match="does not unlock this filesystem"):
            sb.unlock(wrong)


def test_empty_secret_is_refused_at_creation() -> None:
    with pytest.raises(SetupError, match="empty"):
        Superblock.create(b"", 4 << 20, kdf=cheap())


def test_default_kdf_is_the_strong_one() -> None:
    # Not unlocked here: scrypt at n=2**15 costs ~0.1 s, and the tests stay fast.
    assert (KdfParams.new().n, KdfParams.new().r) == (2**15, 8)


def test_rewrap_keeps_the_data_key_and_drops_the_old_secret() -> None:
    sb, key = make(b"old")
    new = sb.rewrap(b"old", b"new")
    assert new.unlock(b"new") == key
    with pytest.raises(WrongPassphrase):
        new.unlock(b"old")
    assert (new.fs_uuid, new.block_size, new.created_ns) == (sb.fs_uuid, sb.block_size, sb.created_ns)
    assert new.kdf.salt != sb.kdf.salt and new.kdf.n == sb.kdf.n
    assert new.wrapped_key != sb.wrapped_key
    assert sb.unlock(b"old") == key  # the old superblock object is unchanged


def test_rewrap_with_new_kdf_params_and_wrong_old_secret() -> None:
    sb, key = make(b"old")
    params = KdfParams.new(n=2**11)
    new = sb.rewrap(b"old", b"new", kdf=params)
    assert new.kdf == params and new.unlock(b"new") == key
    with pytest.raises(WrongPassphrase):
        sb.rewrap(b"not old", b"new")
    with pytest.raises(SetupError):
        sb.rewrap(b"old", b"")


def test_bytes_roundtrip() -> None:
    sb, key = make()
    data = sb.to_bytes()
    doc = json.loads(data)
    assert doc["magic"] == "repfs-superblock"
    assert list(doc) == sorted(doc)
    fields = {"magic", "fs_uuid", "format_version", "block_size", "created_ns", "kdf", "wrapped_key"}
    assert set(doc) == fields
    back = Superblock.from_bytes(data)
    assert back == sb and back.to_bytes() == data
    assert back.unlock(b"correct horse") == key


def test_wrapping_binds_the_identity_fields() -> None:
    """A superblock edited on a pool (uuid, block size, ...) no longer unlocks."""
    sb, _ = make()
    edits = [
        replace(sb, fs_uuid=str(uuid.uuid4())),
        replace(sb, block_size=sb.block_size // 2),
        replace(sb, created_ns=sb.created_ns + 1),
        replace(sb, kdf=replace(sb.kdf, salt=bytes(16))),
    ]
    for edited in edits:
        with pytest.raises(WrongPassphrase):
            Superblock.from_bytes(edited.to_bytes()).unlock(b"correct horse")


def _doc() -> dict[str, object]:
    result: dict[str, object] = json.loads(make()[0].to_bytes())
    return result


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not UTF-8 JSON"),
        (b"\xff\xfe garbage", "not UTF-8 JSON"),
        (b"[1, 2]", "not a repfs superblock"),
        (b"RPFS\x01B\x01\x00", "not UTF-8 JSON"),
        (b"{" * 100_000, "far too large"),
        (b"[" * 10_000 + b"]" * 10_000, "not"),
        (json.dumps({**_doc(), "magic": "zfs"}).encode(), "not a repfs superblock"),
        (json.dumps({**_doc(), "format_version": 2}).encode(), "version 2 is not supported"),
        (json.dumps({**_doc(), "format_version": "1"}).encode(), "format_version"),
        (json.dumps({**_doc(), "extra": 1}).encode(), "unexpected \\['extra'\\]"),
        (json.dumps({k: v for k, v in _doc().items() if k != "kdf"}).encode(), "missing \\['kdf'\\]"),
        (json.dumps({**_doc(), "fs_uuid": "not-a-uuid"}).encode(), "uuid"),
        (json.dumps({**_doc(), "block_size": 0}).encode(), "block size"),
        (json.dumps({**_doc(), "block_size": True}).encode(), "wrong type"),
        (json.dumps({**_doc(), "wrapped_key": "@@"}).encode(), "base64"),
        (json.dumps({**_doc(), "kdf": {"alg": "scrypt"}}).encode(), "KDF"),
    ],
)
def test_garbage_is_corrupt(data: bytes, message: str) -> None:
    with pytest.raises(CorruptObject, match=message):
        Superblock.from_bytes(data)


def test_repr_hides_the_wrapped_key() -> None:
    sb, key = make()
    text = repr(sb)
    assert sb.fs_uuid in text
    assert key.hex() not in text and repr(key) not in text
    assert repr(sb.wrapped_key) not in text
