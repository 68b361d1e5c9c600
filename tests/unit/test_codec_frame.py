"""The object header: byte layout and parsing of bad headers."""

from __future__ import annotations

import pytest

from repfs.codec.frame import (
    CURRENT_VERSION,
    HEADER_SIZE,
    MAGIC,
    Compression,
    Header,
    Kind,
    encode_header,
    parse_header,
)
from repfs.errors import CorruptObject


def test_layout_is_magic_version_kind_compression_keyid() -> None:
    assert HEADER_SIZE == 8
    assert encode_header(Kind.BLOCK, Compression.ZSTD) == b"RPFS\x01B\x01\x00"
    assert encode_header(Kind.META, Compression.NONE, key_id=7) == b"RPFS\x01M\x00\x07"


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("compression", list(Compression))
def test_roundtrip(kind: Kind, compression: Compression) -> None:
    raw = encode_header(kind, compression, key_id=5) + b"payload"
    header, offset = parse_header(raw)
    assert header == Header(kind, compression, 5, CURRENT_VERSION)
    assert raw[offset:] == b"payload"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "too short"),
        (b"RPFS\x01B\x01", "too short"),
        (b"XPFS\x01B\x01\x00", "bad magic"),
        (b"RPFS\x00B\x01\x00", "version 0 is not supported"),
        (b"RPFS\x02B\x01\x00", "version 2 is not supported"),
        (b"RPFS\x01Z\x01\x00", "unknown kind"),
        (b"RPFS\x01B\x02\x00", "compression"),
    ],
)
def test_bad_headers_are_corrupt(raw: bytes, message: str) -> None:
    with pytest.raises(CorruptObject, match=message):
        parse_header(raw)


def test_encode_refuses_impossible_fields() -> None:
    with pytest.raises(ValueError):
        encode_header(Kind.BLOCK, Compression.NONE, key_id=256)
    with pytest.raises(ValueError):
        encode_header(Kind.BLOCK, Compression.NONE, version=9)
    assert parse_header(memoryview(MAGIC + b"\x01B\x00\x00"))[0].kind is Kind.BLOCK
