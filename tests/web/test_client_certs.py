"""Client certificates over real TLS: `repfs-admin users cert` makes one (the private key
never leaves the caller); a connection that presents it is that account, for files too;
a bearer token still wins; a certificate from another CA is refused in the handshake; the
certificate's digest is no token; removing its key revokes it at once."""

from __future__ import annotations

import datetime
import hashlib
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.mount.accounts_rig import admin
from tests.web.conftest import Web

pytestmark = pytest.mark.timeout(300)


def with_cert(web: Web, crt: Path, key: Path, token: str | None = None) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(web.cert))
    trust.load_cert_chain(str(crt), str(key))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c = httpx.Client(base_url=web.url, verify=trust, headers=headers, timeout=60)
    web.clients.append(c)
    return c


def forged(tmp: Path, account: str, key_id: str) -> tuple[Path, Path]:
    """A certificate naming `account` and `key_id`, signed by a CA repfs does not know."""
    key = ec.generate_private_key(ec.SECP256R1())
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, account), x509.NameAttribute(NameOID.USER_ID, key_id)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(other).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    crt, pem = tmp / "forged.crt", tmp / "forged.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


def test_a_client_certificate_is_its_account_until_revoked(web: Web, tmp_path: Path) -> None:
    alice, bob = web.names[0], web.names[2]
    res = admin(web.sock, "users", "cert", alice, "--out", str(tmp_path), "--days", "30", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    made = json.loads(res.stdout)
    crt, key = tmp_path / f"{alice}.crt", tmp_path / f"{alice}.key"
    assert made["kind"] == "cert" and made["account"] == alice and "digest" not in made
    assert (key.stat().st_mode & 0o777) == 0o600
    assert key.read_text() not in web.fs.log_text() and "PRIVATE KEY" not in res.stdout
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == alice
    assert (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days in (29, 30)
    # the CA repfs web trusts is the one that signed it
    ca = x509.load_pem_x509_certificate((tmp_path / "repfs-ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)

    c = with_cert(web, crt, key)
    me = c.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["name"] == alice, me.text
    assert c.put(f"/api/v1/files/{alice}/by-cert.txt", content=b"signed in by certificate").status_code == 201
    written = web.fs.mnt / alice / "by-cert.txt"
    assert written.read_bytes() == b"signed in by certificate"
    assert written.stat().st_uid == int(me.json()["uid"])  # written as the account, through the mount

    assert web.client().get("/api/v1/me").status_code == 401  # no certificate, no token
    b = web.sign_in(bob)
    token = str(b.headers["authorization"]).split()[1]
    both = with_cert(web, crt, key, token)
    assert both.get("/api/v1/me").json()["name"] == bob  # a token says who more precisely than the connection
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert web.client(f"rk_{made['id']}_{fingerprint}").get("/api/v1/me").status_code == 401  # a digest is no token

    bad_crt, bad_key = forged(tmp_path, alice, made["id"])
    with pytest.raises(httpx.TransportError):  # refused in the handshake: TLS 1.3 clients see it at the first read
        with_cert(web, bad_crt, bad_key).get("/api/v1/me")
    assert c.get("/api/v1/me").json()["name"] == alice  # and the server goes on

    listed = json.loads(admin(web.sock, "users", "keys", "list", alice, "--json").stdout)["keys"]
    assert [x["kind"] for x in listed if x["id"] == made["id"]] == ["cert"]
    assert admin(web.sock, "users", "keys", "remove", alice, made["id"]).returncode == 0
    gone = c.get("/api/v1/me")  # the same connection: revoked at once
    assert gone.status_code == 401 and "not valid" in gone.json()["message"]
    assert written.read_bytes() == b"signed in by certificate"


def test_bad_certificate_requests_say_what_is_wrong(web: Web, tmp_path: Path) -> None:
    alice = web.names[0]
    res = admin(web.sock, "users", "cert", "nosuchaccount", "--out", str(tmp_path))
    assert res.returncode == 4 and "nosuchaccount" in res.stderr, res.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a refused request
    assert admin(web.sock, "users", "cert", alice, "--out", str(tmp_path)).returncode == 0
    again = admin(web.sock, "users", "cert", alice, "--out", str(tmp_path))
    assert again.returncode == 5 and "exists" in again.stderr  # never overwrites a key
    assert admin(web.sock, "users", "cert", alice, "--out", str(tmp_path / "x"), "--ops", "fly").returncode == 2
