"""Two ways into an account besides a password, over real TLS. Client certificates:
`repfs-admin users cert` makes one (the private key never leaves the caller); a connection
that presents it is that account, for files too; a bearer token still wins; a certificate
from another CA is refused in the handshake; its digest is no token; removing its key
revokes it at once. Welcome mail (to a real SMTP server, aiosmtpd): `users add` mails the
login name, the web address, the validity and a one-time link that sets the password."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.mount.accounts_rig import admin
from tests.seaweed import free_ports
from tests.web.conftest import Web

ADMIN = [sys.executable, "-m", "repfs.admin.cli"]

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


class Inbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it is sent."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_ports(1)[0]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def last_to(self, address: str) -> str:
        mine = [m for m in self.messages if m["To"] == address]
        assert mine, f"no mail to {address}: {[m['To'] for m in self.messages]}"
        body = mine[-1].get_body(("plain",))
        assert body is not None
        return str(body.get_content())


def link_token(text: str) -> str:
    found = re.search(r"/welcome#(rs_\S+)", text)
    assert found, text
    return found.group(1)


def test_a_new_account_is_mailed_its_login_and_a_one_time_link(web: Web) -> None:
    people = [f"wm{secrets.token_hex(3)}" for _ in range(3)]
    inbox = Inbox()
    inbox.controller.start()
    try:
        res = admin(web.sock, "users", "add", people[0], "--email", f"{people[0]}@example.org", "--create-system-user")
        assert res.returncode == 0 and "no mail was sent" in res.stdout, res.stdout + res.stderr  # no SMTP settings
        res = admin(web.sock, "mail", "set", "--host", "127.0.0.1", "--port", str(inbox.port), "--security", "none",
                    "--from", "repfs@example.org", "--web-url", web.url + "/")  # fmt: skip
        assert res.returncode == 0, res.stderr
        shown = json.loads(admin(web.sock, "mail", "show", "--json").stdout)
        assert shown["configured"] and shown["web_url"] == web.url and "password" not in shown

        dave = people[1]
        res = admin(web.sock, "users", "add", dave, "--email", f"{dave}@example.org", "--create-system-user",
                    "--valid-until", "2031-06-30")  # fmt: skip
        assert res.returncode == 0 and f"sent to {dave}@example.org" in res.stdout, res.stdout + res.stderr
        text = inbox.last_to(f"{dave}@example.org")
        assert f"login name:   {dave}" in text and f"web address:  {web.url}/" in text
        assert "valid until:  2031-06-30" in text and "password:" not in text.lower().replace("your password", "")
        token = link_token(text)

        page = web.client().get("/welcome")
        assert page.status_code == 200 and "set your password" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        api = web.client()
        short = api.post("/api/v1/password/link", json={"token": token, "password": "short"})
        assert short.status_code == 400  # and the link is still good
        done = api.post("/api/v1/password/link", json={"token": token, "password": "a new password of dave"})
        assert done.status_code == 200 and done.json()["name"] == dave, done.text
        assert web.sign_in(dave, "a new password of dave").get("/api/v1/me").json()["name"] == dave
        again = api.post("/api/v1/password/link", json={"token": token, "password": "another password"})
        assert again.status_code == 403  # good once
        signed = web.client().post("/api/v1/token", json={"login": dave, "password": "another password"})
        assert signed.status_code == 401
        assert web.client(token).get("/api/v1/me").status_code == 401  # a link is no bearer token

        # a new welcome ends the link before it
        assert admin(web.sock, "users", "welcome", dave).returncode == 0
        first = link_token(inbox.last_to(f"{dave}@example.org"))
        assert admin(web.sock, "users", "welcome", dave).returncode == 0
        second = link_token(inbox.last_to(f"{dave}@example.org"))
        assert api.post("/api/v1/password/link", json={"token": first, "password": "x" * 12}).status_code == 403
        assert api.post("/api/v1/password/link", json={"token": second, "password": "y" * 12}).status_code == 200
        assert "repfs@example.org" in str(inbox.messages[-1]["From"])

        inbox.controller.stop()  # the SMTP server goes away: the account is made, and that is said
        res = admin(web.sock, "users", "add", people[2], "--email", f"{people[2]}@example.org", "--create-system-user")
        assert res.returncode == 0 and "was not sent" in res.stdout, res.stdout + res.stderr
        assert admin(web.sock, "users", "show", people[2]).returncode == 0
        failed = admin(web.sock, "mail", "test", "someone@example.org")
        assert failed.returncode != 0 and "not sent" in failed.stderr, failed.stderr
        assert admin(web.sock, "mail", "clear").returncode == 0
        assert not json.loads(admin(web.sock, "mail", "show", "--json").stdout)["configured"]
    finally:
        with contextlib.suppress(Exception):
            inbox.controller.stop()
        for name in people:
            admin(web.sock, "users", "remove", name)
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)


def test_bad_mail_settings_are_refused(web: Web) -> None:
    base = ["mail", "set", "--host", "127.0.0.1", "--from", "repfs@example.org", "--web-url"]
    assert admin(web.sock, *base, "ftp://x").returncode == 2
    bad = admin(web.sock, "mail", "set", "--host", "127.0.0.1", "--from", "nobody", "--web-url", web.url)
    assert bad.returncode == 2 and "mail address" in bad.stderr
    r, w = os.pipe()
    os.write(w, b"secret smtp password\n")
    os.close(w)
    try:
        clear = subprocess.run([*ADMIN, "--socket", str(web.sock), *base, web.url, "--security", "none",
                                "--user", "u", "--password-fd", str(r)], pass_fds=(r,), capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    finally:
        os.close(r)
    assert clear.returncode == 2 and "in clear" in clear.stderr
    assert "secret smtp password" not in web.fs.log_text()
    assert not json.loads(admin(web.sock, "mail", "show", "--json").stdout)["configured"]
