"""The web process's certificate: the operator's, or one repfs makes at first start.

A made certificate is self-signed (ECDSA P-256, valid ten years, for localhost, this
host's name and 127.0.0.1/::1), kept as cert.pem and key.pem (0600) in the state folder
and reused after; its SHA-256 fingerprint is logged at every start so that clients can
pin it (`curl --cacert FS_DIR/web/cert.pem` or check the fingerprint).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from repfs.errors import SetupError

log = logging.getLogger(__name__)

VALID_DAYS = 3650


def fingerprint(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def make_self_signed(cert_file: Path, key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"repfs web on {host}")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName("localhost"), x509.DNSName(host),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def certificate(state: Path, cert: Path | None, key: Path | None) -> tuple[Path, Path]:
    """The certificate and key to serve: the operator's, else the one made in `state`."""
    if (cert is None) != (key is None):
        raise SetupError("give both --cert and --key, or neither (then repfs makes a self-signed certificate)")
    if cert is not None and key is not None:
        for f in (cert, key):
            if not f.is_file():
                raise SetupError(f"{f}: no such file")
        return cert, key
    cert, key = state / "cert.pem", state / "key.pem"
    if not (cert.exists() and key.exists()):
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_self_signed(cert, key)
        log.warning("made a self-signed certificate: %s", cert)
    return cert, key
