"""The 8-byte header that starts every object repfs writes to a pool.

Layout (docs/FORMAT.md is the full description):

    offset  size  field
    0       4     magic b"RPFS"
    4       1     format version (FORMAT_V1 = 1)
    5       1     kind: b"B" (0x42) data block, b"M" (0x4D) metadata object
    6       1     compression: 0 none, 1 zstd
    7       1     key id: 0 (the only data key so far)

The header is sent as AEAD associated data, so every field is authenticated: flipping
the compression flag or the kind makes decryption fail rather than mis-parse.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from repfs.errors import CorruptObject

MAGIC = b"RPFS"
FORMAT_V1 = 1
CURRENT_VERSION = FORMAT_V1
SUPPORTED_VERSIONS = frozenset({FORMAT_V1})
KEY_ID_DEFAULT = 0

_STRUCT = struct.Struct(">4sBBBB")
HEADER_SIZE = _STRUCT.size  # 8


class Kind(enum.IntEnum):
    """What an object holds; also keeps a metadata object from passing as a block."""

    BLOCK = 0x42  # "B"
    META = 0x4D  # "M"


class Compression(enum.IntEnum):
    NONE = 0
    ZSTD = 1


@dataclass(frozen=True)
class Header:
    kind: Kind
    compression: Compression
    key_id: int = KEY_ID_DEFAULT
    version: int = CURRENT_VERSION


def encode_header(
    kind: Kind,
    compression: Compression,
    *,
    key_id: int = KEY_ID_DEFAULT,
    version: int = CURRENT_VERSION,
) -> bytes:
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cannot write object format version {version}")
    if not 0 <= key_id <= 255:
        raise ValueError(f"key id must fit in one byte, got {key_id}")
    return _STRUCT.pack(MAGIC, version, Kind(kind), Compression(compression), key_id)


def parse_header(data: bytes | memoryview) -> tuple[Header, int]:
    """Parse and check a header; returns it and the offset where the payload starts."""
    if len(data) < HEADER_SIZE:
        raise CorruptObject(f"object is too short for a header ({len(data)} bytes, need {HEADER_SIZE})")
    magic, version, kind, compression, key_id = _STRUCT.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptObject("not a repfs object (bad magic)")
    if version not in SUPPORTED_VERSIONS:
        raise CorruptObject(
            f"object format version {version} is not supported by this repfs "
            f"(supports {sorted(SUPPORTED_VERSIONS)}); it is corrupt or needs a newer repfs"
        )
    try:
        header = Header(Kind(kind), Compression(compression), key_id, version)
    except ValueError:
        raise CorruptObject(f"object header has unknown kind {kind} or compression {compression}") from None
    return header, HEADER_SIZE
