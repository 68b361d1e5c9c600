"""Key hierarchy: scrypt KEK, key wrapping, HKDF subkeys."""

from __future__ import annotations

import base64

import pytest

from repfs.codec.keys import (
    KdfParams,
    derive_kek,
    derive_keys,
    new_data_key,
    unwrap_key,
    wrap_key,
)
from repfs.errors import CorruptObject, WrongPassphrase

CHEAP = KdfParams(salt=b"0123456789abcdef", n=2**10)


def test_kdf_defaults_and_new() -> None:
    a, b = KdfParams.new(), KdfParams.new()
    assert (a.n, a.r, a.p) == (2**15, 8, 1)
    assert len(a.salt) == 16 and a.salt != b.salt


def test_kdf_dict_roundtrip() -> None:
    d = CHEAP.to_dict()
    assert d == {"alg": "scrypt", "salt": base64.b64encode(CHEAP.salt).decode(), "n": 1024, "r": 8, "p": 1}
    assert KdfParams.from_dict(d) == CHEAP


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "argon2id"},
        {"salt": "!!not base64!!"},
        {"salt": base64.b64encode(b"short").decode()},
        {"n": 1000},
        {"n": "1024"},
        {"n": True},
        {"r": 0},
        {"p": 99},
        {"n": 2**30},  # would need 1 TiB: a tampered superblock must not get that far
        {"extra": 1},
    ],
)
def test_kdf_from_dict_refuses_bad_params(change: dict[str, object]) -> None:
    with pytest.raises(CorruptObject):
        KdfParams.from_dict({**CHEAP.to_dict(), **change})


def test_kdf_constructor_validates() -> None:
    with pytest.raises(ValueError):
        KdfParams(salt=b"short")
    with pytest.raises(ValueError):
        KdfParams(salt=bytes(16), n=3)


def test_derive_kek_is_deterministic_and_depends_on_everything() -> None:
    kek = derive_kek(b"secret", CHEAP)
    assert len(kek) == 32
    assert kek == derive_kek(b"secret", CHEAP)
    assert kek != derive_kek(b"Secret", CHEAP)
    assert kek != derive_kek(b"secret", KdfParams(salt=b"fedcba9876543210", n=2**10))
    assert kek != derive_kek(b"secret", KdfParams(salt=CHEAP.salt, n=2**11))


def test_wrap_unwrap() -> None:
    kek, key = derive_kek(b"pw", CHEAP), new_data_key()
    assert len(key) == 32 and key != new_data_key()
    wrapped = wrap_key(kek, key, b"aad")
    assert len(wrapped) == 12 + 32 + 16
    assert wrapped != wrap_key(kek, key, b"aad")  # random nonce
    assert unwrap_key(kek, wrapped, b"aad") == key


def test_unwrap_failures_are_wrong_passphrase() -> None:
    kek, key = derive_kek(b"pw", CHEAP), new_data_key()
    wrapped = wrap_key(kek, key, b"aad")
    bad = [
        (derive_kek(b"other", CHEAP), wrapped, b"aad"),
        (kek, wrapped, b"other aad"),
        (kek, wrapped[:-1], b"aad"),
        (kek, wrapped[:20], b"aad"),
        (kek, bytes([wrapped[0] ^ 1]) + wrapped[1:], b"aad"),
    ]
    for args in bad:
        with pytest.raises(WrongPassphrase) as info:
            unwrap_key(*args)
        assert str(info.value) == "the passphrase or key file does not unlock this filesystem"


def test_subkeys_are_distinct_and_deterministic() -> None:
    key = new_data_key()
    keys = derive_keys(key)
    subkeys = {keys.block_id_key, keys.block_enc_key, keys.meta_key, keys.content_hash_key, key}
    assert len(subkeys) == 5 and all(len(k) == 32 for k in subkeys)
    assert derive_keys(key) == keys
    assert derive_keys(new_data_key()).block_id_key != keys.block_id_key
    with pytest.raises(ValueError):
        derive_keys(b"short")


def test_repr_hides_subkeys() -> None:
    keys = derive_keys(new_data_key())
    text = repr(keys) + str(keys) + f"{keys}"
    for k in (keys.block_id_key, keys.block_enc_key, keys.meta_key, keys.content_hash_key):
        assert k.hex() not in text and repr(k) not in text
