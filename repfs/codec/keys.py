"""The key hierarchy: secret → scrypt → KEK, which wraps the data key → HKDF subkeys.

The data key is random and never changes; a new passphrase only rewraps it, so no
object is ever re-encrypted. Every subkey has its own HKDF purpose label, so a key
meant for one use can never be confused with another.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from repfs.errors import CorruptObject, WrongPassphrase

KEY_SIZE = 32
SALT_SIZE = 16
WRAP_NONCE_SIZE = 12
GCM_TAG_SIZE = 16
KDF_ALG = "scrypt"

# scrypt needs about 128 * n * r bytes of memory. A superblock on a pool is not trusted
# until it is unlocked, so stored parameters are bounded to keep a tampered one from
# asking for gigabytes or minutes.
MAX_KDF_MEMORY = 1 << 30
MAX_KDF_P = 16

LABEL_BLOCK_ID = b"repfs block-id v1"
LABEL_BLOCK_ENC = b"repfs block-enc v1"
LABEL_META = b"repfs meta v1"
LABEL_CONTENT_HASH = b"repfs content-hash v1"

WRONG_SECRET_MESSAGE = "the passphrase or key file does not unlock this filesystem"


@dataclass(frozen=True)
class KdfParams:
    """scrypt parameters; stored in the superblock, none of them secret."""

    salt: bytes
    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        problem = _kdf_problem(self.salt, self.n, self.r, self.p)
        if problem:
            raise ValueError(problem)

    @classmethod
    def new(cls, *, n: int = 2**15, r: int = 8, p: int = 1) -> KdfParams:
        return cls(salt=os.urandom(SALT_SIZE), n=n, r=r, p=p)

    def to_dict(self) -> dict[str, object]:
        return {
            "alg": KDF_ALG,
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "n": self.n,
            "r": self.r,
            "p": self.p,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> KdfParams:
        """Parse stored parameters; anything malformed or out of bounds is CorruptObject."""
        if set(d) != {"alg", "salt", "n", "r", "p"}:
            raise CorruptObject(f"KDF parameters have the wrong fields: {sorted(d)}")
        if d["alg"] != KDF_ALG:
            raise CorruptObject(f"unknown key derivation function {d['alg']!r} (this repfs knows {KDF_ALG})")
        salt_b64, n, r, p = d["salt"], d["n"], d["r"], d["p"]
        if not (isinstance(salt_b64, str) and _is_int(n) and _is_int(r) and _is_int(p)):
            raise CorruptObject("KDF parameters have the wrong types")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except (binascii.Error, ValueError):
            raise CorruptObject("KDF salt is not valid base64") from None
        problem = _kdf_problem(salt, n, r, p)
        if problem:
            raise CorruptObject(f"KDF parameters are invalid: {problem}")
        return cls(salt=salt, n=n, r=r, p=p)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _kdf_problem(salt: bytes, n: int, r: int, p: int) -> str:
    if len(salt) < SALT_SIZE:
        return f"salt must be at least {SALT_SIZE} bytes"
    if n < 2 or n & (n - 1):
        return f"n must be a power of two >= 2, got {n}"
    if r < 1 or not 1 <= p <= MAX_KDF_P:
        return f"r must be >= 1 and p between 1 and {MAX_KDF_P}"
    if 128 * n * r > MAX_KDF_MEMORY:
        return f"n={n}, r={r} would need more than {MAX_KDF_MEMORY >> 20} MiB of memory"
    return ""


def derive_kek(secret: bytes, params: KdfParams) -> bytes:
    """The key-encryption key from a passphrase or key file content (slow on purpose)."""
    kdf = Scrypt(salt=params.salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p)
    return kdf.derive(secret)


def new_data_key() -> bytes:
    return os.urandom(KEY_SIZE)


def wrap_key(kek: bytes, data_key: bytes, aad: bytes) -> bytes:
    """AES-256-GCM under the KEK with a random nonce; returns nonce ‖ ciphertext ‖ tag."""
    _check_kek(kek)
    nonce = os.urandom(WRAP_NONCE_SIZE)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, aad)


def _check_kek(kek: bytes) -> None:
    if len(kek) != KEY_SIZE:
        raise ValueError(f"a key-encryption key must be {KEY_SIZE} bytes")


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    _check_kek(kek)
    # A wrong secret and a tampered wrapped key look the same to AES-GCM: both fail the
    # tag. The likely cause is the secret, so that is what the message says.
    if len(wrapped) < WRAP_NONCE_SIZE + GCM_TAG_SIZE:
        raise WrongPassphrase(WRONG_SECRET_MESSAGE)
    try:
        return AESGCM(kek).decrypt(wrapped[:WRAP_NONCE_SIZE], wrapped[WRAP_NONCE_SIZE:], aad)
    except InvalidTag:
        raise WrongPassphrase(WRONG_SECRET_MESSAGE) from None


@dataclass(frozen=True, repr=False)
class FsKeys:
    """The subkeys of one filesystem, derived from its data key."""

    block_id_key: bytes
    block_enc_key: bytes
    meta_key: bytes
    content_hash_key: bytes  # HMAC key of the index of files by content (fs.contenthash)

    def __repr__(self) -> str:
        return "FsKeys(<secret>)"


def hkdf_sha256(key: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256 without salt: the input is already a uniformly random key."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def derive_keys(data_key: bytes) -> FsKeys:
    if len(data_key) != KEY_SIZE:
        raise ValueError(f"data key must be {KEY_SIZE} bytes")
    return FsKeys(
        block_id_key=hkdf_sha256(data_key, LABEL_BLOCK_ID),
        block_enc_key=hkdf_sha256(data_key, LABEL_BLOCK_ENC),
        meta_key=hkdf_sha256(data_key, LABEL_META),
        content_hash_key=hkdf_sha256(data_key, LABEL_CONTENT_HASH),
    )
