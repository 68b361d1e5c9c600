"""The certificate authority of client certificates (seed 001: "certificates should be used
for each user as well as for the central server").

repfs keeps one CA per filesystem, made when it is first needed, in the `meta` entry
`client_ca` (versioned JSON of the certificate and key in PEM): metadata like the rest,
journaled encrypted and recovered with the filesystem, so certificates stay valid on a
rebuilt host. `repfs web` trusts it for TLS client authentication. A client certificate
names its account (CN) and its key ID (UID); the key record (`fs.apikeys`, kind `cert`)
holds the SHA-256 of the whole certificate, so revoking the key revokes the certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from repfs.errors import InvalidRequest
from repfs.meta import schema as s
from repfs.meta.store import Txn

RECORD_VERSION = 1
CA_DAYS = 20 * 365
MAX_DAYS = 10 * 365


@dataclass(frozen=True)
class ClientCa:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return pem_of(self.cert)

    def pack(self) -> bytes:
        key = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()  # fmt: skip
        return json.dumps({"v": RECORD_VERSION, "cert": self.pem, "key": key}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> ClientCa:
        data = json.loads(raw)
        if data.get("v") != RECORD_VERSION:
            raise ValueError(f"client CA record version {data.get('v')} is not known")
        key = serialization.load_pem_private_key(data["key"].encode(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the client CA key is not an EC key")
        return cls(x509.load_pem_x509_certificate(data["cert"].encode()), key)


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_or_make(t: Txn, fs_uuid: str) -> ClientCa:
    """The filesystem's CA; made (P-256, valid 20 years) and stored when there is none."""
    raw = t.get("meta", s.META_CLIENT_CA)
    if raw is not None:
        return ClientCa.unpack(raw)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"repfs client CA {fs_uuid}")])
    now = _now()
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = ClientCa(cert, key)
    t.put("meta", s.META_CLIENT_CA, ca.pack())
    return ca


def _public_key(pem: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise InvalidRequest("public_key is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise InvalidRequest("an RSA key needs at least 2048 bits")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InvalidRequest("the public key must be EC, RSA or Ed25519")
    return key


def sign(ca: ClientCa, account: str, key_id: str, public_key_pem: str, days: int) -> x509.Certificate:
    """A client certificate for `account`, key `key_id`, valid `days` days."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be 1 to {MAX_DAYS}")
    public = _public_key(public_key_pem)
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, account), x509.NameAttribute(NameOID.USER_ID, key_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def digest(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Presented:
    account: str
    key_id: str
    sha256: str


def presented(ca: ClientCa, pem: str) -> Presented:
    """Who a certificate from a TLS handshake says it is, if this CA signed it and it is in
    its validity period (InvalidRequest otherwise); the key record decides the rest."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidRequest("the certificate was not issued by this filesystem's client CA") from None
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidRequest("the certificate is outside its validity period")
    names = {a.oid: a.value for a in cert.subject}
    account, key_id = names.get(NameOID.COMMON_NAME), names.get(NameOID.USER_ID)
    if not isinstance(account, str) or not isinstance(key_id, str):
        raise InvalidRequest("the certificate names no account and key")
    return Presented(account, key_id, digest(cert))
