"""Property tests: any content roundtrips; no damaged object ever decodes to data."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.errors import CorruptObject

CODEC = BlockCodec(derive_keys(b"k" * 32))

# Mixes runs of repeated bytes (compressible) with arbitrary bytes (incompressible).
contents = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 500)), max_size=20).map(
        lambda runs: b"".join(chunk * n for chunk, n in runs)
    ),
)


@settings(max_examples=200, deadline=None)
@given(contents)
def test_block_roundtrip(data: bytes) -> None:
    bid = CODEC.block_id(data)
    obj = CODEC.encode(bid, data)
    assert CODEC.encode(bid, data) == obj
    assert CODEC.decode(bid, obj) == data


@settings(max_examples=100, deadline=None)
@given(contents, st.text(max_size=40))
def test_meta_roundtrip(data: bytes, name: str) -> None:
    name = name.encode("utf-8", "replace").decode("utf-8", "replace")
    assert CODEC.decode_meta(name, CODEC.encode_meta(name, data)) == data


@settings(max_examples=200, deadline=None)
@given(contents, st.data())
def test_damaged_block_never_decodes(data: bytes, draw: st.DataObject) -> None:
    bid = CODEC.block_id(data)
    obj = bytearray(CODEC.encode(bid, data))
    action = draw.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if action == "flip":
        pos = draw.draw(st.integers(0, len(obj) - 1))
        obj[pos] ^= draw.draw(st.integers(1, 255))
    elif action == "truncate":
        del obj[draw.draw(st.integers(0, len(obj) - 1)) :]
    else:
        pos = draw.draw(st.integers(0, len(obj)))
        obj[pos:pos] = draw.draw(st.binary(min_size=1, max_size=16))
    try:
        result = CODEC.decode(bid, bytes(obj))
    except CorruptObject:
        return
    raise AssertionError(f"a damaged object decoded to {len(result)} bytes")
