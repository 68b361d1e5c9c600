"""Mail to account holders (seed 001: "when an account is created an e-mail is sent to the
owner with login details and validity period"): the SMTP settings an administrator gives
(`repfs-admin mail set`), kept in the `meta` entry `mail` (versioned JSON, journaled with
the rest of the metadata; the SMTP password is never answered or logged), and sending one
message with a deadline. Python's smtplib speaks SMTP; this module only decides what goes
where.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from repfs.errors import InvalidRequest
from repfs.meta import schema as s
from repfs.meta.store import Txn

RECORD_VERSION = 1
SECURITY = ("starttls", "tls", "none")
TIMEOUT = 30.0  # seconds for the whole conversation's every step


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    sender: str  # the From address
    web_url: str  # the web interface's address, for links
    security: str = "starttls"
    user: str = ""
    password: str = ""

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> MailSettings:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version != RECORD_VERSION:
            raise ValueError(f"mail settings record version {version} is not known")
        return cls(**data)

    def public(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out["password_set"] = bool(out.pop("password"))
        return out

    def checked(self) -> MailSettings:
        if not self.host or any(c.isspace() for c in self.host):
            raise InvalidRequest("give the SMTP server's host name")
        if not 0 < self.port < 65536:
            raise InvalidRequest("the SMTP port must be 1 to 65535")
        if self.security not in SECURITY:
            raise InvalidRequest(f"security is one of {', '.join(SECURITY)}")
        if "@" not in self.sender or any(c in self.sender for c in "\r\n"):
            raise InvalidRequest("the sender must be a mail address")
        if not self.web_url.startswith(("https://", "http://")) or any(c.isspace() for c in self.web_url):
            raise InvalidRequest("web_url must be the web interface's address, https://HOST[:PORT]")
        if self.password and self.security == "none":
            raise InvalidRequest("an SMTP password needs security starttls or tls: it would cross the network in clear")
        return MailSettings(self.host, self.port, self.sender, self.web_url.rstrip("/"), self.security, self.user,
                            self.password)  # fmt: skip


def settings(t: Txn) -> MailSettings | None:
    raw = t.get("meta", s.META_MAIL)
    return MailSettings.unpack(raw) if raw is not None else None


def set_settings(t: Txn, value: MailSettings | None) -> None:
    if value is None:
        t.delete("meta", s.META_MAIL)
    else:
        t.put("meta", s.META_MAIL, value.checked().pack())


def send(config: MailSettings, to: str, subject: str, text: str) -> None:
    """Send one plain-text message (blocking: run it in a worker thread). OSError or
    smtplib.SMTPException when the server cannot be reached or refuses it."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = config.sender, to, subject
    message["Date"], message["Message-ID"] = formatdate(localtime=True), make_msgid(domain="repfs")
    message.set_content(text)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if config.security == "tls":
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=TIMEOUT)
    with smtp:
        if config.security == "starttls":
            smtp.starttls(context=context)
        if config.user:
            smtp.login(config.user, config.password)
        smtp.send_message(message)
