"""Golden vectors: the on-disk format v1, pinned byte for byte.

The values in tests/data/codec_golden.json were generated once with repfs.codec. If one of
these tests fails, the bytes repfs writes (or the keys it derives) have changed: that is a
format change. Existing filesystems would stop reading, so it needs a new version byte
(repfs.codec.frame.FORMAT_V1 -> a new constant) with the old version still decodable, and
new vectors beside the old ones. Never regenerate the file to make a test pass.

The one value a library upgrade may legitimately change is object_sha256 of the "zstd"
vector: another libzstd can compress the same block to other bytes. That is safe (the
nonce is derived from the payload, so the two encodings never share a keystream) and
decoding the stored object must still work; only that hash may then be updated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from repfs.codec.codec import BlockCodec
from repfs.codec.frame import parse_header
from repfs.codec.keys import derive_keys
from repfs.codec.superblock import Superblock
from repfs.fs.contenthash import ContentHashes

GOLDEN: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "codec_golden.json").read_text())
DATA_KEY = bytes.fromhex(GOLDEN["data_key_hex"])


def codec() -> BlockCodec:
    return BlockCodec(derive_keys(DATA_KEY))


def test_subkey_derivation_is_pinned() -> None:
    keys = derive_keys(DATA_KEY)
    assert {name: getattr(keys, name).hex() for name in GOLDEN["subkeys"]} == GOLDEN["subkeys"]


def test_the_content_index_key_is_pinned() -> None:
    """Files by content are indexed under HMAC-SHA256(content-hash key, SHA-256 of the content)."""
    vector = GOLDEN["content_hash"]
    digest = hashlib.sha256(vector["content"].encode()).digest()
    assert digest.hex() == vector["sha256_hex"]
    key = derive_keys(DATA_KEY).content_hash_key
    assert ContentHashes(key).mac(digest).hex() == vector["index_mac_hex"]
    assert hmac.new(key, digest, hashlib.sha256).hexdigest() == vector["index_mac_hex"]


@pytest.mark.parametrize("vector", GOLDEN["blocks"], ids=lambda v: v["name"])
def test_block_vector_decodes_and_block_id_is_pinned(vector: dict[str, Any]) -> None:
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    obj = bytes.fromhex(vector["object_hex"])
    assert codec().block_id(plaintext).hex() == vector["block_id"]
    assert parse_header(obj)[0].compression == vector["compression"]
    assert codec().decode(bytes.fromhex(vector["block_id"]), obj) == plaintext


@pytest.mark.parametrize("vector", GOLDEN["blocks"], ids=lambda v: v["name"])
def test_block_vector_encodes_to_the_pinned_object(vector: dict[str, Any]) -> None:
    """A changed hash here is a format change: it needs a new version byte (see module doc)."""
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    obj = codec().encode(bytes.fromhex(vector["block_id"]), plaintext)
    assert hashlib.sha256(obj).hexdigest() == vector["object_sha256"]
    assert obj.hex() == vector["object_hex"]


def test_meta_vector_decodes() -> None:
    meta = GOLDEN["meta"]
    obj = bytes.fromhex(meta["object_hex"])
    assert codec().decode_meta(meta["name"], obj) == bytes.fromhex(meta["plaintext_hex"])


def test_superblock_vector_parses_reserialises_and_unlocks() -> None:
    stored = GOLDEN["superblock"]["bytes"].encode()
    sb = Superblock.from_bytes(stored)
    assert sb.to_bytes() == stored
    assert sb.unlock(GOLDEN["superblock"]["secret"].encode()) == DATA_KEY
