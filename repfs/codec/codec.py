"""Block and metadata objects: zstd compression, then AES-256-GCM, framed by a header.

Block object:  header(8) ‖ nonce(12) ‖ AES-256-GCM(payload) ‖ tag(16)
Meta object:   header(8) ‖ seed(16)  ‖ AES-256-GCM(payload) ‖ tag(16)

Blocks are encrypted deterministically: each block id gets its own AES key (HKDF of the
block-encryption key and the id), and the nonce is a keyed BLAKE3 of header ‖ payload
under a second per-block key. The same block encoded twice by the same encoder gives
byte-identical objects, so all replicas of a block are equal. The nonce is synthetic
rather than fixed because "one key encrypts one plaintext" holds for the block's
plaintext, not for its compressed form: another zstd version or level gives another
payload for the same block id, and under a fixed nonce two such objects would share a
GCM keystream. Different payloads get different nonces.

Metadata objects are not deduplicated: each draws a random 16-byte seed from which its
own key and nonce are derived, so the number of metadata objects a filesystem can write
is not bounded by 96-bit nonce collisions under one key.

Everything here is pure and thread-safe: zstd contexts are kept per thread.
"""

from __future__ import annotations

import hmac
import os
import threading

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from repfs.codec.frame import (
    HEADER_SIZE,
    KEY_ID_DEFAULT,
    Compression,
    Header,
    Kind,
    encode_header,
    parse_header,
)
from repfs.codec.keys import KEY_SIZE, FsKeys, hkdf_sha256
from repfs.errors import CorruptObject

BytesLike = bytes | bytearray | memoryview

BLOCK_ID_SIZE = 32
NONCE_SIZE = 12
META_SEED_SIZE = 16
TAG_SIZE = 16
BLOCK_OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE  # 36
META_OVERHEAD = HEADER_SIZE + META_SEED_SIZE + TAG_SIZE  # 40

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_META_SIZE = 256 * 1024 * 1024

LABEL_BLOCK_KEY = b"repfs block-key v1"
LABEL_META_OBJECT_KEY = b"repfs meta-object-key v1"

# Compressed payloads are kept only when they save at least this share (in percent):
# below that, decompressing on every read costs more than the bytes saved.
MIN_SAVING_PERCENT = 3
# Buffers from this size on are probed before zstd runs over all of them (`_worth_trying`).
PROBE_FROM = 256 << 10
PROBE_BYTES = 16 << 10


class _ZstdContexts(threading.local):
    """One compressor and decompressor per thread: zstd contexts are not thread-safe."""

    def __init__(self, level: int) -> None:
        self.cctx = zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)
        self.dctx = zstandard.ZstdDecompressor()


class BlockCodec:
    """Turns plaintext blocks and metadata into pool objects and back."""

    def __init__(
        self,
        keys: FsKeys,
        *,
        zstd_level: int = 1,
        max_size: int = DEFAULT_MAX_SIZE,
        max_meta_size: int = DEFAULT_MAX_META_SIZE,
    ) -> None:
        for k in (keys.block_id_key, keys.block_enc_key, keys.meta_key):
            if len(k) != KEY_SIZE:
                raise ValueError(f"every subkey must be {KEY_SIZE} bytes")
        if max_size <= 0 or max_meta_size <= 0:
            raise ValueError("max_size and max_meta_size must be positive")
        self._keys = keys
        self.zstd_level = zstd_level
        self.max_size = max_size
        self.max_meta_size = max_meta_size
        self._zstd = _ZstdContexts(zstd_level)

    def __repr__(self) -> str:
        return f"BlockCodec(zstd_level={self.zstd_level}, max_size={self.max_size})"

    # --- blocks ------------------------------------------------------------------------

    def block_id(self, plaintext: BytesLike) -> bytes:
        """Keyed BLAKE3 of the plaintext: equal content, equal id, stored once."""
        return blake3.blake3(plaintext, key=self._keys.block_id_key).digest()

    def encode(self, block_id: bytes, plaintext: BytesLike, *, hashed: bool = False) -> bytes:
        """The object for one block. Refuses (ValueError) a block id that is not the plaintext's.

        The check costs one BLAKE3 pass and catches a buffer changed after it was hashed,
        which would otherwise be found only when the block is read back. `hashed`: the
        caller computed `block_id` from this very `bytes` object (immutable), so the pass
        is skipped; a mutable buffer is always checked.
        """
        _check_block_id(block_id)
        trusted = hashed and isinstance(plaintext, bytes)
        data = plaintext if isinstance(plaintext, bytes) else bytes(plaintext)
        if len(data) > self.max_size:
            raise ValueError(f"block of {len(data)} bytes is larger than max_size {self.max_size}")
        if not trusted and not hmac.compare_digest(self.block_id(data), block_id):
            raise ValueError("block id does not match the plaintext")
        compression, payload = self._compress(data)
        header = encode_header(Kind.BLOCK, compression)
        aes_key, nonce_key = self._block_keys(block_id)
        hasher = blake3.blake3(header, key=nonce_key)
        hasher.update(payload)
        nonce = hasher.digest(length=NONCE_SIZE)
        ciphertext = AESGCM(aes_key).encrypt(nonce, payload, header + block_id)
        return b"".join((header, nonce, ciphertext))

    def decode(self, block_id: bytes, obj: BytesLike) -> bytes:
        """The plaintext of a block object, or CorruptObject; never wrong data."""
        _check_block_id(block_id)
        where = f"block {block_id.hex()}"
        view = memoryview(obj)
        header = self._parse(view, Kind.BLOCK, BLOCK_OVERHEAD, self.max_size, where)
        nonce = view[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        aes_key, _ = self._block_keys(block_id)
        aad = view[:HEADER_SIZE].tobytes() + block_id
        try:
            payload = AESGCM(aes_key).decrypt(nonce, view[HEADER_SIZE + NONCE_SIZE :], aad)
        except InvalidTag:
            raise CorruptObject(
                f"{where}: object failed authentication "
                "(bit flip, truncation, or the object of another block)"
            ) from None
        plaintext = self._decompress(header, payload, self.max_size, where)
        if not hmac.compare_digest(self.block_id(plaintext), block_id):
            raise CorruptObject(f"{where}: content does not match its block id")
        return plaintext

    def _block_keys(self, block_id: bytes) -> tuple[bytes, bytes]:
        okm = hkdf_sha256(self._keys.block_enc_key, LABEL_BLOCK_KEY + block_id, 2 * KEY_SIZE)
        return okm[:KEY_SIZE], okm[KEY_SIZE:]

    # --- metadata objects ----------------------------------------------------------------

    def encode_meta(self, name: str, plaintext: BytesLike) -> bytes:
        """A metadata object (journal segment, snapshot) bound to its object name."""
        data = plaintext if isinstance(plaintext, bytes) else bytes(plaintext)
        if len(data) > self.max_meta_size:
            raise ValueError(f"metadata of {len(data)} bytes exceeds max_meta_size {self.max_meta_size}")
        compression, payload = self._compress(data)
        header = encode_header(Kind.META, compression)
        seed = os.urandom(META_SEED_SIZE)
        key, nonce = self._meta_key(seed)
        ciphertext = AESGCM(key).encrypt(nonce, payload, header + name.encode("utf-8"))
        return b"".join((header, seed, ciphertext))

    def decode_meta(self, name: str, obj: BytesLike) -> bytes:
        where = f"metadata object {name!r}"
        view = memoryview(obj)
        header = self._parse(view, Kind.META, META_OVERHEAD, self.max_meta_size, where)
        key, nonce = self._meta_key(view[HEADER_SIZE : HEADER_SIZE + META_SEED_SIZE].tobytes())
        aad = view[:HEADER_SIZE].tobytes() + name.encode("utf-8")
        try:
            payload = AESGCM(key).decrypt(nonce, view[HEADER_SIZE + META_SEED_SIZE :], aad)
        except InvalidTag:
            raise CorruptObject(
                f"{where}: object failed authentication (bit flip, truncation, or another object)"
            ) from None
        return self._decompress(header, payload, self.max_meta_size, where)

    def _meta_key(self, seed: bytes) -> tuple[bytes, bytes]:
        okm = hkdf_sha256(self._keys.meta_key, LABEL_META_OBJECT_KEY + seed, KEY_SIZE + NONCE_SIZE)
        return okm[:KEY_SIZE], okm[KEY_SIZE:]

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def _parse(view: memoryview, kind: Kind, overhead: int, limit: int, where: str) -> Header:
        """Check everything about an object that can be checked before decrypting it."""
        if len(view) < overhead:
            raise CorruptObject(f"{where}: object is truncated ({len(view)} bytes, need {overhead})")
        try:
            header, _ = parse_header(view)
        except CorruptObject as exc:
            raise CorruptObject(f"{where}: {exc}") from None
        if header.kind is not kind:
            raise CorruptObject(f"{where}: object is of kind {header.kind.name}, not {kind.name}")
        if header.key_id != KEY_ID_DEFAULT:
            raise CorruptObject(f"{where}: object is encrypted under unknown key id {header.key_id}")
        if len(view) - overhead > limit:
            raise CorruptObject(f"{where}: object of {len(view)} bytes exceeds the size limit {limit}")
        return header

    def _compress(self, data: bytes) -> tuple[Compression, bytes]:
        if data and self._worth_trying(data):
            compressed = self._zstd.cctx.compress(data)
            if len(compressed) * 100 <= len(data) * (100 - MIN_SAVING_PERCENT):
                return Compression.ZSTD, compressed
        return Compression.NONE, data

    def _worth_trying(self, data: bytes) -> bool:
        """Whether zstd might save anything on `data`: a large buffer whose three samples
        (start, middle, end) all compress by less than 1% is taken as incompressible
        (encrypted, compressed media, random) and not compressed whole. Deterministic: the
        same bytes always get the same answer, so equal blocks stay equal objects."""
        if len(data) < PROBE_FROM:
            return True
        mid = len(data) // 2
        for start in (0, mid - PROBE_BYTES // 2, len(data) - PROBE_BYTES):
            sample = data[start : start + PROBE_BYTES]
            if len(self._zstd.cctx.compress(sample)) * 100 < len(sample) * 99:
                return True
        return False

    def _decompress(self, header: Header, payload: bytes, limit: int, where: str) -> bytes:
        if header.compression is Compression.NONE:
            return payload
        # The frame's declared size must be checked first: python-zstandard trusts it
        # over max_output_size and would allocate whatever it claims.
        try:
            size = zstandard.frame_content_size(payload)
            if not 0 <= size <= limit:
                raise CorruptObject(f"{where}: compressed frame declares {size} bytes (limit {limit})")
            return self._zstd.dctx.decompress(payload, max_output_size=limit, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"{where}: zstd decompression failed: {exc}") from None


def _check_block_id(block_id: bytes) -> None:
    if len(block_id) != BLOCK_ID_SIZE:
        raise ValueError(f"a block id is {BLOCK_ID_SIZE} bytes, got {len(block_id)}")
