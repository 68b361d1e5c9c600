"""The superblock: the small JSON object on every pool that names a filesystem.

It holds the filesystem uuid, format version, block size and the data key wrapped by a
key-encryption key derived from the passphrase. It is readable without the secret (so a
pool can be identified before unlocking) and authenticated by unlocking: the wrapping
binds every field except the KDF parameters, and changing those only yields another KEK,
which fails to unwrap.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TypeGuard

from repfs.codec.keys import (
    KEY_SIZE,
    SALT_SIZE,
    KdfParams,
    derive_kek,
    new_data_key,
    unwrap_key,
    wrap_key,
)
from repfs.config import MAX_BLOCK_SIZE
from repfs.errors import CorruptObject, SetupError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({FORMAT_VERSION})
MAGIC = "repfs-superblock"
MAX_SUPERBLOCK_BYTES = 64 * 1024
_WRAP_LABEL = b"repfs superblock wrap v1\x00"
_FIELDS = {"magic", "fs_uuid", "format_version", "block_size", "created_ns", "kdf", "wrapped_key"}


@dataclass(frozen=True)
class Superblock:
    fs_uuid: str
    format_version: int
    block_size: int
    created_ns: int
    kdf: KdfParams
    wrapped_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        try:
            canonical = str(uuid.UUID(self.fs_uuid))
        except (ValueError, TypeError, AttributeError):
            canonical = ""
        if canonical != self.fs_uuid:
            raise ValueError(f"fs_uuid {self.fs_uuid!r} is not a lower-case hyphenated uuid")
        if self.format_version not in SUPPORTED_FORMAT_VERSIONS:
            raise ValueError(f"format version {self.format_version} is not supported")
        if not 0 < self.block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block size must be between 1 and {MAX_BLOCK_SIZE}, got {self.block_size}")
        if not 0 <= self.created_ns < 2**63:
            raise ValueError(f"created_ns out of range: {self.created_ns}")

    # --- creating, unlocking, rewrapping -------------------------------------------

    @classmethod
    def create(
        cls, secret: bytes, block_size: int, *, kdf: KdfParams | None = None
    ) -> tuple[Superblock, bytes]:
        """A new filesystem identity: returns the superblock and its fresh data key."""
        _check_new_secret(secret)
        kdf = kdf if kdf is not None else KdfParams.new()
        data_key = new_data_key()
        sb = cls(
            fs_uuid=str(uuid.uuid4()),
            format_version=FORMAT_VERSION,
            block_size=block_size,
            created_ns=time.time_ns(),
            kdf=kdf,
            wrapped_key=b"",
        )
        sb = replace(sb, wrapped_key=wrap_key(derive_kek(secret, kdf), data_key, sb._aad()))
        return sb, data_key

    def unlock(self, secret: bytes) -> bytes:
        """The data key; raises WrongPassphrase if `secret` does not unwrap it."""
        data_key = unwrap_key(derive_kek(secret, self.kdf), self.wrapped_key, self._aad())
        if len(data_key) != KEY_SIZE:
            raise CorruptObject(f"superblock of {self.fs_uuid} wraps a key of the wrong size")
        return data_key

    def rewrap(self, old_secret: bytes, new_secret: bytes, *, kdf: KdfParams | None = None) -> Superblock:
        """The same data key under a new secret; no object needs rewriting.

        Without `kdf`, the current scrypt cost is kept with a fresh salt.
        """
        data_key = self.unlock(old_secret)
        _check_new_secret(new_secret)
        if kdf is None:
            kdf = replace(self.kdf, salt=os.urandom(SALT_SIZE))
        wrapped = wrap_key(derive_kek(new_secret, kdf), data_key, self._aad())
        return replace(self, kdf=kdf, wrapped_key=wrapped)

    def _aad(self) -> bytes:
        """Binds the wrapped key to this filesystem and its fixed parameters."""
        return (
            _WRAP_LABEL
            + uuid.UUID(self.fs_uuid).bytes
            + struct.pack(">IQQ", self.format_version, self.block_size, self.created_ns)
        )

    # --- serialisation ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        doc = {
            "magic": MAGIC,
            "fs_uuid": self.fs_uuid,
            "format_version": self.format_version,
            "block_size": self.block_size,
            "created_ns": self.created_ns,
            "kdf": self.kdf.to_dict(),
            "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii"),
        }
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Superblock:
        """Parse a stored superblock; anything that is not a valid one is CorruptObject."""
        if len(data) > MAX_SUPERBLOCK_BYTES:
            raise CorruptObject(f"not a repfs superblock: {len(data)} bytes is far too large")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CorruptObject("not a repfs superblock: not UTF-8 JSON") from None
        if not isinstance(doc, dict) or doc.get("magic") != MAGIC:
            raise CorruptObject(f'not a repfs superblock: no "magic": "{MAGIC}" field')
        version = doc.get("format_version")
        if not _is_int(version):
            raise CorruptObject("superblock: format_version is missing or not an integer")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise CorruptObject(
                f"superblock format version {version} is not supported by this repfs "
                f"(supports {sorted(SUPPORTED_FORMAT_VERSIONS)}); upgrade repfs to open this filesystem"
            )
        if set(doc) != _FIELDS:
            missing, extra = sorted(_FIELDS - set(doc)), sorted(set(doc) - _FIELDS)
            raise CorruptObject(f"superblock has wrong fields (missing {missing}, unexpected {extra})")
        fs_uuid, block_size, created_ns = doc["fs_uuid"], doc["block_size"], doc["created_ns"]
        kdf_doc, wrapped_b64 = doc["kdf"], doc["wrapped_key"]
        if not (
            isinstance(fs_uuid, str)
            and _is_int(block_size)
            and _is_int(created_ns)
            and isinstance(kdf_doc, dict)
            and isinstance(wrapped_b64, str)
        ):
            raise CorruptObject("superblock: a field has the wrong type")
        try:
            wrapped = base64.b64decode(wrapped_b64, validate=True)
        except (binascii.Error, ValueError):
            raise CorruptObject("superblock: wrapped_key is not valid base64") from None
        kdf = KdfParams.from_dict(kdf_doc)
        try:
            return cls(fs_uuid, version, block_size, created_ns, kdf, wrapped)
        except ValueError as exc:
            raise CorruptObject(f"superblock: {exc}") from None


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_new_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes):
        raise TypeError("the secret must be bytes (encode a passphrase as UTF-8)")
    if not secret:
        raise SetupError("an empty passphrase or key file cannot protect a filesystem")
