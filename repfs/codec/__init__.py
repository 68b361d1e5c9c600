"""Block codec: keys, superblock, object header, and the compress → encrypt codec.

Pure and synchronous; the async layers call it from worker threads. docs/FORMAT.md
describes every byte it writes.
"""

from repfs.codec.codec import BLOCK_ID_SIZE, DEFAULT_MAX_SIZE, BlockCodec
from repfs.codec.frame import Compression, Header, Kind, encode_header, parse_header
from repfs.codec.keys import (
    FsKeys,
    KdfParams,
    derive_kek,
    derive_keys,
    new_data_key,
    unwrap_key,
    wrap_key,
)
from repfs.codec.superblock import FORMAT_VERSION, Superblock

__all__ = [
    "BLOCK_ID_SIZE",
    "DEFAULT_MAX_SIZE",
    "FORMAT_VERSION",
    "BlockCodec",
    "Compression",
    "FsKeys",
    "Header",
    "KdfParams",
    "Kind",
    "Superblock",
    "derive_kek",
    "derive_keys",
    "encode_header",
    "new_data_key",
    "parse_header",
    "unwrap_key",
    "wrap_key",
]
