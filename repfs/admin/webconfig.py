"""TLS and basic auth for the metrics endpoint: `repfs mount --metrics-web-config FILE`.

The file has the shape of the web configuration that Prometheus's own exporters read
(`--web.config.file`), so one file and one habit serve both:

    tls_server_config:
      cert_file: metrics.crt          # relative paths are from the file's own directory
      key_file: metrics.key           # unencrypted PEM, readable by the daemon only
      client_ca_file: clients.pem     # optional: ask scrapers for a certificate
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12              # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...          # a bcrypt hash (htpasswd -B), or an argon2 one

YAML, or TOML when the name ends in `.toml` (same keys). Everything is checked when the
mount starts, and a bad file stops it with one line naming the file and the key. A key
this module does not know is refused rather than ignored: a typo must not leave the
endpoint open.

Passwords are checked with pyca's `bcrypt` (the hash Prometheus's exporters take) or
`argon2-cffi` (`$argon2id$...`), in a worker thread; a right answer is remembered (a
digest of it, never the password) so that a scrape every few seconds does not cost a
bcrypt each time. A user that does not exist costs as much as a wrong password. The
certificate and key are read again when their files change (certificate renewal needs no
remount); if the new ones do not load, the old ones stay and a warning says why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
import bcrypt
import trio
import yaml

from repfs.errors import ConfigError

log = logging.getLogger(__name__)

TOP_KEYS = ("basic_auth_users", "tls_server_config")
TLS_KEYS = ("cert_file", "client_auth_type", "client_ca_file", "key_file", "max_version", "min_version")
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
REMEMBERED = 64  # right answers kept (digests), per endpoint
REALM = 'Basic realm="repfs metrics", charset="UTF-8"'


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None

    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())

    def context(self) -> ssl.SSLContext:
        """A server context with the certificate loaded; ConfigError (one line) if it cannot be."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        for path in self.files():
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except _EncryptedKey:
            raise ConfigError(f"{self.key_file} is an encrypted key; give the daemon an unencrypted one") from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{self.cert_file} and {self.key_file} are not a PEM certificate and its key ({exc.reason or exc})"
            ) from None
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError as exc:
                raise ConfigError(f"{self.client_ca_file} holds no PEM CA certificate ({exc.reason or exc})") from None
        ctx.verify_mode = self.client_auth
        return ctx


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey()


@dataclass(frozen=True)
class WebConfig:
    path: Path
    tls: TlsConfig | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)  # name -> password hash


def load_web_config(path: Path) -> WebConfig:
    """Read and check `path`; ConfigError with one line naming the file if it is unreadable or wrong."""
    try:
        return _load(path.absolute())
    except ConfigError as exc:
        raise ConfigError(f"metrics web config {path}: {exc}") from None


def _load(path: Path) -> WebConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("it is not UTF-8 text") from None
    data = _parse(text, toml=path.suffix == ".toml")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("it must be a mapping of tls_server_config and basic_auth_users")
    _known(data, TOP_KEYS, "")
    tls = _tls(data.get("tls_server_config"), path.parent)
    users = _users(data.get("basic_auth_users"))
    if tls is not None:
        tls.context()  # every file readable, the key fits the certificate
    return WebConfig(path=path, tls=tls, users=users)


def _parse(text: str, *, toml: bool) -> Any:
    if toml:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # the problem and its line only: never the text itself
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigError(f"not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError:
        raise ConfigError("not valid YAML") from None


def _known(data: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(known)}")


def _tls(section: Any, base: Path) -> TlsConfig | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError("tls_server_config must be a mapping with cert_file and key_file")
    _known(section, TLS_KEYS, "tls_server_config.")

    def path(key: str, *, required: bool) -> Path | None:
        value = section.get(key)
        if value is None or value == "":
            if required:
                raise ConfigError(f"tls_server_config.{key} is missing")
            return None
        if not isinstance(value, str):
            raise ConfigError(f"tls_server_config.{key} must be a file name")
        return base / Path(value).expanduser()

    def version(key: str, default: ssl.TLSVersion | None) -> ssl.TLSVersion | None:
        value = section.get(key)
        if value is None:
            return default
        if value not in VERSIONS:
            raise ConfigError(f"tls_server_config.{key} must be {' or '.join(VERSIONS)}, not {value!r}")
        return VERSIONS[value]

    cert, key = path("cert_file", required=True), path("key_file", required=True)
    assert cert is not None and key is not None
    ca = path("client_ca_file", required=False)
    kind = section.get("client_auth_type")
    if kind is None:
        kind = "RequireAndVerifyClientCert" if ca is not None else "NoClientCert"
    if kind not in CLIENT_AUTH:
        raise ConfigError(
            f"tls_server_config.client_auth_type must be one of {', '.join(CLIENT_AUTH)}, not {kind!r} "
            "(a client certificate given is always verified)"
        )
    if CLIENT_AUTH[kind] != ssl.CERT_NONE and ca is None:
        raise ConfigError(f"tls_server_config.client_auth_type {kind} needs client_ca_file")
    low = version("min_version", ssl.TLSVersion.TLSv1_2)
    high = version("max_version", None)
    assert low is not None
    if high is not None and high < low:
        raise ConfigError("tls_server_config.max_version is below min_version")
    return TlsConfig(cert, key, ca, CLIENT_AUTH[kind], low, high)


def _users(section: Any) -> dict[str, str]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("basic_auth_users must be a mapping of user name to password hash")
    users: dict[str, str] = {}
    for name, hashed in section.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"basic_auth_users: {name!r} is not a user name (non-empty, no ':')")
        # the value is never shown: it may be a password written where its hash belongs
        if not isinstance(hashed, str) or not _is_hash(hashed):
            raise ConfigError(
                f"basic_auth_users.{name} is not a bcrypt or argon2 password hash "
                "(see docs/METRICS.md: 'TLS and passwords')"
            )
        users[name] = hashed
    return users


def _is_hash(text: str) -> bool:
    if text.startswith("$argon2"):
        try:
            argon2.extract_parameters(text)
        except argon2.exceptions.InvalidHashError:
            return False
        return True
    return BCRYPT_HASH.match(text) is not None


def verify_password(hashed: str, password: bytes) -> bool:
    """Whether `password` matches `hashed` (bcrypt or argon2); CPU work: call it in a thread."""
    if hashed.startswith("$argon2"):
        try:
            return argon2.PasswordHasher().verify(hashed, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    try:
        return bcrypt.checkpw(password, hashed.encode("ascii"))
    except ValueError:  # longer than bcrypt's 72 bytes, or a hash bcrypt refuses
        return False


class BasicAuth:
    """Checks `Authorization: Basic ...` against the configured users."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        # an unknown user is checked against this, so that it costs as much as a wrong password
        self._decoy = next(iter(self.users.values()), "")
        self._right: set[bytes] = set()
        self._limiter = trio.CapacityLimiter(2)

    async def check(self, header: str | None) -> str | None:
        """The user a request's Authorization header proves, or None."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        hashed = self.users.get(user)
        secret = password.encode("utf-8")
        digest = hashlib.sha256(b"\0".join((user.encode(), secret, (hashed or "").encode()))).digest()
        if hashed is not None and digest in self._right:
            return user
        ok = await trio.to_thread.run_sync(verify_password, hashed or self._decoy, secret, limiter=self._limiter)
        if not ok or hashed is None:
            return None
        if len(self._right) >= REMEMBERED:
            self._right.clear()
        self._right.add(digest)
        return user


class TlsContexts:
    """The server context of a TlsConfig, made again when its files change."""

    def __init__(self, tls: TlsConfig) -> None:
        self.tls = tls
        self._stamp = self._stamps()
        self._context = tls.context()
        self._failed: tuple[tuple[int, int], ...] | None = None

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self.tls.files():
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_ino))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    def current(self) -> ssl.SSLContext:
        stamp = self._stamps()
        if stamp != self._stamp and stamp != self._failed:
            try:
                self._context = self.tls.context()
            except ConfigError as exc:
                self._failed = stamp
                log.warning("metrics: keeping the old certificate: %s", exc)
            else:
                self._stamp, self._failed = stamp, None
                log.info("metrics: certificate %s loaded again", self.tls.cert_file)
        return self._context


class TlsListener(trio.abc.Listener[trio.SSLStream[trio.SocketStream]]):
    """TLS over a TCP listener, with the context of the moment for each connection."""

    def __init__(self, inner: trio.SocketListener, contexts: TlsContexts) -> None:
        self.inner = inner
        self.contexts = contexts

    async def accept(self) -> trio.SSLStream[trio.SocketStream]:
        stream = await self.inner.accept()
        return trio.SSLStream(stream, self.contexts.current(), server_side=True, https_compatible=True)

    async def aclose(self) -> None:
        await self.inner.aclose()
