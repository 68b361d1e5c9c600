"""BlockCodec: roundtrips, determinism, and every way an object can go bad."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from repfs.codec.codec import (
    BLOCK_OVERHEAD,
    META_OVERHEAD,
    NONCE_SIZE,
    BlockCodec,
)
from repfs.codec.frame import HEADER_SIZE, Compression, Kind, encode_header, parse_header
from repfs.codec.keys import FsKeys, derive_keys
from repfs.errors import CorruptObject

KEYS = derive_keys(bytes(range(32)))
TEXT = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(2000))


def _codec(**kw: int) -> BlockCodec:
    return BlockCodec(KEYS, **kw)


def _roundtrip(codec: BlockCodec, data: bytes) -> bytes:
    bid = codec.block_id(data)
    obj = codec.encode(bid, data)
    assert codec.decode(bid, obj) == data
    return obj


@pytest.mark.parametrize(
    "data", [b"", b"x", TEXT, os.urandom(100_000)], ids=["empty", "1b", "text", "random"]
)
def test_roundtrip(data: bytes) -> None:
    _roundtrip(_codec(), data)


def test_roundtrip_accepts_memoryview_and_bytearray() -> None:
    codec = _codec()
    bid = codec.block_id(memoryview(TEXT))
    assert bid == codec.block_id(TEXT)
    obj = codec.encode(bid, bytearray(TEXT))
    assert obj == codec.encode(bid, memoryview(TEXT))
    assert codec.decode(bid, memoryview(obj)) == TEXT


def test_block_id_is_keyed_32_bytes() -> None:
    codec = _codec()
    other = BlockCodec(derive_keys(bytes(32)))
    assert len(codec.block_id(TEXT)) == 32
    assert codec.block_id(TEXT) == codec.block_id(bytes(TEXT))
    assert codec.block_id(TEXT) != other.block_id(TEXT)
    assert codec.block_id(b"a") != codec.block_id(b"b")


def test_encoding_is_deterministic_across_codec_instances() -> None:
    for data in (TEXT, os.urandom(5000), b""):
        a, b = _codec(), _codec()
        bid = a.block_id(data)
        assert a.encode(bid, data) == a.encode(bid, data) == b.encode(bid, data)


def test_compression_used_for_text() -> None:
    obj = _roundtrip(_codec(), TEXT)
    header, _ = parse_header(obj)
    assert header.compression is Compression.ZSTD
    assert len(obj) < len(TEXT) // 4


def test_compression_skipped_for_random_data() -> None:
    data = os.urandom(64 * 1024)
    obj = _roundtrip(_codec(), data)
    header, _ = parse_header(obj)
    assert header.compression is Compression.NONE
    assert len(obj) == len(data) + BLOCK_OVERHEAD


def test_compression_skipped_when_saving_is_under_three_percent() -> None:
    # 98% random + 2% zeros: zstd saves about 2%, not worth a decompression on every read.
    data = os.urandom(98_000) + bytes(2_000)
    obj = _roundtrip(_codec(), data)
    assert parse_header(obj)[0].compression is Compression.NONE


def test_large_blocks_are_compressed_when_any_probe_compresses() -> None:
    """Blocks from 256 KiB on are probed at their start, middle and end before zstd runs
    over all of them: incompressible ones skip it, and one compressible part is enough."""
    codec = _codec()
    noise = os.urandom(1 << 20)
    assert parse_header(_roundtrip(codec, noise))[0].compression is Compression.NONE
    text = (TEXT * 2)[: 128 << 10]  # enough for the 3% saving, under one probe only
    for where in (0, len(noise) // 2 - len(text) // 2, len(noise) - len(text)):
        mixed = noise[:where] + text + noise[where + len(text) :]
        header, _ = parse_header(_roundtrip(codec, mixed))
        assert header.compression is Compression.ZSTD, where
    big_text = (TEXT * 12)[: 1 << 20]
    obj = _roundtrip(codec, big_text)
    assert parse_header(obj)[0].compression is Compression.ZSTD and len(obj) < len(big_text) // 4


def test_encode_refuses_a_block_id_of_other_content() -> None:
    codec = _codec()
    with pytest.raises(ValueError, match="does not match"):
        codec.encode(codec.block_id(b"a"), b"b")
    with pytest.raises(ValueError, match="does not match"):  # `hashed` is no excuse for a mutable buffer
        codec.encode(codec.block_id(b"a"), bytearray(b"b"), hashed=True)
    data = os.urandom(300_000)
    bid = codec.block_id(data)
    assert codec.encode(bid, data, hashed=True) == codec.encode(bid, data)  # the same object, one pass less
    with pytest.raises(ValueError, match="32 bytes"):
        codec.encode(b"short", b"b")


def test_encode_refuses_blocks_over_max_size() -> None:
    codec = _codec(max_size=1000)
    data = bytes(1001)
    with pytest.raises(ValueError, match="max_size"):
        codec.encode(codec.block_id(data), data)


def _flip(obj: bytes, bit: int) -> bytes:
    b = bytearray(obj)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("data", [TEXT[:3000], os.urandom(300)], ids=["compressed", "stored"])
def test_every_bit_flip_of_a_small_object_is_detected(data: bytes) -> None:
    codec = _codec()
    bid = codec.block_id(data)
    obj = codec.encode(bid, data)
    for bit in range(len(obj) * 8):
        with pytest.raises(CorruptObject):
            codec.decode(bid, _flip(obj, bit))


def test_bit_flips_in_header_and_sampled_ciphertext_of_a_large_object() -> None:
    codec = _codec()
    data = os.urandom(1 << 20)
    bid = codec.block_id(data)
    obj = codec.encode(bid, data)
    rng = random.Random(7)
    header_and_nonce = range((HEADER_SIZE + NONCE_SIZE) * 8)
    body = rng.sample(range((HEADER_SIZE + NONCE_SIZE) * 8, len(obj) * 8), 64)
    tail = range((len(obj) - 16) * 8, len(obj) * 8, 5)
    for bit in [*header_and_nonce, *body, *tail]:
        with pytest.raises(CorruptObject):
            codec.decode(bid, _flip(obj, bit))


@pytest.mark.parametrize("data", [TEXT, os.urandom(5000), b""], ids=["compressed", "stored", "empty"])
def test_truncation_and_extension_are_detected(data: bytes) -> None:
    codec = _codec()
    bid = codec.block_id(data)
    obj = codec.encode(bid, data)
    for n in sorted({0, 1, HEADER_SIZE - 1, HEADER_SIZE, BLOCK_OVERHEAD - 1, len(obj) // 2, len(obj) - 1}):
        with pytest.raises(CorruptObject):
            codec.decode(bid, obj[:n])
    with pytest.raises(CorruptObject):
        codec.decode(bid, obj + b"\0")


def test_swapped_objects_are_detected() -> None:
    codec = _codec()
    a, b = TEXT, TEXT[::-1]
    id_a, id_b = codec.block_id(a), codec.block_id(b)
    obj_a, obj_b = codec.encode(id_a, a), codec.encode(id_b, b)
    with pytest.raises(CorruptObject, match=id_b.hex()):
        codec.decode(id_b, obj_a)
    with pytest.raises(CorruptObject):
        codec.decode(id_a, obj_b)


def test_objects_of_another_filesystem_are_detected() -> None:
    ours, theirs = _codec(), BlockCodec(derive_keys(bytes(32)))
    obj = theirs.encode(theirs.block_id(TEXT), TEXT)
    with pytest.raises(CorruptObject):
        ours.decode(theirs.block_id(TEXT), obj)
    with pytest.raises(CorruptObject):
        ours.decode(ours.block_id(TEXT), obj)


def test_garbage_is_corrupt_with_a_clear_message() -> None:
    codec = _codec()
    bid = codec.block_id(b"x")
    with pytest.raises(CorruptObject, match="bad magic"):
        codec.decode(bid, b"not an object at all, just some bytes")
    with pytest.raises(CorruptObject, match="truncated"):
        codec.decode(bid, b"")


def test_header_fields_are_checked_before_decryption() -> None:
    codec = _codec()
    data = TEXT[:500]
    bid = codec.block_id(data)
    body = codec.encode(bid, data)[HEADER_SIZE:]
    with pytest.raises(CorruptObject, match="not supported"):
        codec.decode(bid, b"RPFS\x02B\x01\x00" + body)
    with pytest.raises(CorruptObject, match="kind META"):
        codec.decode(bid, encode_header(Kind.META, Compression.ZSTD) + body)
    with pytest.raises(CorruptObject, match="unknown key id 3"):
        codec.decode(bid, encode_header(Kind.BLOCK, Compression.ZSTD, key_id=3) + body)


def test_decoded_size_is_bounded_even_for_an_authentic_object() -> None:
    """A frame that claims a huge size is refused before anything is allocated.

    The object is forged with the block's own key, as a stolen key or a bug could: the
    size bound must not rest on authentication alone.
    """
    codec = _codec(max_size=1 << 20)
    data = b"a" * 1000
    bid = codec.block_id(data)
    aes_key, _ = codec._block_keys(bid)

    def forge(payload: bytes) -> bytes:
        header = encode_header(Kind.BLOCK, Compression.ZSTD)
        nonce = bytes(NONCE_SIZE)
        return header + nonce + AESGCM(aes_key).encrypt(nonce, payload, header + bid)

    big = zstandard.ZstdCompressor().compress(bytes(2 << 20))
    with pytest.raises(CorruptObject, match="declares"):
        codec.decode(bid, forge(big))
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    with pytest.raises(CorruptObject, match="declares -1"):
        codec.decode(bid, forge(unsized))
    good = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(CorruptObject, match="decompression failed"):
        codec.decode(bid, forge(good + good))
    with pytest.raises(CorruptObject, match="decompression failed"):
        codec.decode(bid, forge(good[:-3] + b"\xff\xff\xff"))
    assert codec.decode(bid, forge(good)) == data


def test_oversized_objects_are_refused_before_decryption() -> None:
    small, large = _codec(max_size=1000), _codec()
    data = os.urandom(2000)
    bid = large.block_id(data)
    with pytest.raises(CorruptObject, match="size limit"):
        small.decode(bid, large.encode(bid, data))


def test_decode_never_returns_wrong_data_when_content_and_id_disagree() -> None:
    """An authentic object whose plaintext is not the block's content is refused."""
    codec = _codec()
    bid = codec.block_id(b"the real content")
    aes_key, _ = codec._block_keys(bid)
    header = encode_header(Kind.BLOCK, Compression.NONE)
    nonce = bytes(NONCE_SIZE)
    obj = header + nonce + AESGCM(aes_key).encrypt(nonce, b"other content", header + bid)
    with pytest.raises(CorruptObject, match="does not match its block id"):
        codec.decode(bid, obj)


def test_codec_is_thread_safe() -> None:
    codec = _codec()
    blocks = [TEXT[i:] + os.urandom(i) for i in range(0, 4000, 250)]
    expected = {codec.block_id(b): codec.encode(codec.block_id(b), b) for b in blocks}

    def work() -> None:
        for _ in range(5):
            for b in blocks:
                bid = codec.block_id(b)
                obj = codec.encode(bid, b)
                assert obj == expected[bid]
                assert codec.decode(bid, obj) == b

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work) for _ in range(8)]:
            future.result()  # re-raises a failure from the worker


# --- metadata objects -----------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", TEXT, os.urandom(3000)], ids=["empty", "text", "random"])
def test_meta_roundtrip(data: bytes) -> None:
    codec = _codec()
    obj = codec.encode_meta("journal/000001", data)
    assert codec.decode_meta("journal/000001", obj) == data


def test_meta_objects_are_randomised_and_compressed_when_it_pays() -> None:
    codec = _codec()
    a, b = codec.encode_meta("snap", TEXT), codec.encode_meta("snap", TEXT)
    assert a != b
    assert parse_header(a)[0] == parse_header(b)[0]
    assert parse_header(a)[0].compression is Compression.ZSTD and len(a) < len(TEXT) // 4
    rnd = os.urandom(3000)
    obj = codec.encode_meta("snap", rnd)
    assert parse_header(obj)[0].compression is Compression.NONE
    assert len(obj) == len(rnd) + META_OVERHEAD


def test_meta_is_bound_to_its_name_and_kind() -> None:
    codec = _codec()
    obj = codec.encode_meta("journal/000001", TEXT)
    with pytest.raises(CorruptObject, match="000002"):
        codec.decode_meta("journal/000002", obj)
    block_obj = codec.encode(codec.block_id(TEXT), TEXT)
    with pytest.raises(CorruptObject, match="kind BLOCK"):
        codec.decode_meta("journal/000001", block_obj)
    with pytest.raises(CorruptObject, match="kind META"):
        codec.decode(codec.block_id(TEXT), obj)


def test_meta_bit_flips_and_truncation_are_detected() -> None:
    codec = _codec()
    obj = codec.encode_meta("m", TEXT[:2000])
    for bit in range(len(obj) * 8):
        with pytest.raises(CorruptObject):
            codec.decode_meta("m", _flip(obj, bit))
    for n in range(0, len(obj), 7):
        with pytest.raises(CorruptObject):
            codec.decode_meta("m", obj[:n])


def test_meta_needs_the_meta_key() -> None:
    codec = _codec()
    other_meta = BlockCodec(FsKeys(KEYS.block_id_key, KEYS.block_enc_key, bytes(32), KEYS.content_hash_key))
    with pytest.raises(CorruptObject):
        other_meta.decode_meta("m", codec.encode_meta("m", b"secret names"))


def test_meta_size_limit() -> None:
    codec = _codec(max_meta_size=100)
    with pytest.raises(ValueError, match="max_meta_size"):
        codec.encode_meta("m", bytes(101))
    big = _codec().encode_meta("m", os.urandom(200))
    with pytest.raises(CorruptObject, match="size limit"):
        codec.decode_meta("m", big)


def test_repr_hides_keys() -> None:
    for obj in (KEYS, _codec()):
        text = repr(obj) + str(obj)
        for key in (KEYS.block_id_key, KEYS.block_enc_key, KEYS.meta_key):
            assert key.hex() not in text
            assert repr(key)[2:-1] not in text
