"""Filesystem configuration: TOML on disk, frozen dataclasses in memory.

The configuration of a filesystem lives in `<meta-dir>/repfs.toml`, beside its
metadata, and is written by `repfs mkfs` (mode 0600). Defaults live here and nowhere else.

    replicas = 2
    write_quorum = 1
    block_size = 4194304

    [[pools]]
    name = "pool1"
    url = "file:///var/lib/repfs/pools/pool1"
    weight = 1.0
    capacity = "500G"          # optional, any pool kind: bytes or a size with K/M/G/T

    [[pools]]
    name = "s3a"
    url = "s3://s3.example.com:9000/repfs-data/fs1"   # https; s3+http:// for plain HTTP
    credentials_file = "/etc/repfs/s3a.credentials"     # mode 0600, see below

Pool keys:

    name              unique name inside the filesystem        [default: pool1, pool2, ...]
    url               file:///DIR, s3://HOST[:PORT]/BUCKET[/PREFIX] (HTTPS, certificate
                      verified) or s3+http://HOST[:PORT]/BUCKET[/PREFIX] (plain HTTP: only
                      for a trusted network, e.g. a server on the same host)
    weight            share of the blocks, relative to the other pools      [default: 1.0]
    capacity          bytes the pool may hold; 0 = unknown                  [default: 0]
    warn_threshold    share of the capacity (configured, else the pool's reported total)
                      past which the pool is reported as filling up: 0.8 or "80%"
                                                                      [default: 0.8]
    critical_threshold  share past which the pool takes no new blocks     [default: 0.9]
    draining          true while the pool is being drained (written by repfs-admin
                      pools drain; a restart resumes the drain)            [default: false]
    offline           true while an administrator has taken the pool out (written by
                      repfs-admin pools offline/online): it is not contacted, not even
                      at mount, until it is put back online              [default: false]
  S3 pools only:
    region            the bucket's region              [default: asked from the server]
    path_style        true: http://host/bucket/key; false: http://bucket.host/key
                                                   [default: virtual-host style on AWS only]
    ca_bundle         absolute path of a PEM file of CAs to trust instead of the system's
    credentials_file  absolute path of a TOML file (mode 0600) holding access_key and
                      secret_key
    access_key, secret_key   the credentials inline; repfs.toml must then be mode 0600
    connect_timeout, read_timeout   seconds                        [default: 10, 60]
    connections       most requests in flight to this pool (and open connections)
                                                                        [default: 16]

S3 credentials come from exactly one place, in this order: `access_key`/`secret_key` in
the pool's table, the pool's `credentials_file`, or the environment
(REPFS_S3_ACCESS_KEY/REPFS_S3_SECRET_KEY, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY);
see `repfs.backend.credentials`. They never go on a command line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from repfs.errors import ConfigError

CONFIG_NAME = "repfs.toml"

DEFAULT_REPLICAS = 2
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 64 * 1024 * 1024
POOL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

FILE_SCHEME = "file"
S3_SCHEME = "s3"  # HTTPS
S3_HTTP_SCHEME = "s3+http"  # plain HTTP, asked for explicitly
SUPPORTED_SCHEMES = (FILE_SCHEME, S3_SCHEME, S3_HTTP_SCHEME)

DEFAULT_WARN_THRESHOLD = 0.80
DEFAULT_CRITICAL_THRESHOLD = 0.90
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_S3_CONNECTIONS = 16
MAX_S3_CONNECTIONS = 256

# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)i?b?\s*$", re.I)


def redact_url(url: str) -> str:
    """`url` fit for a message: whatever stands before an '@' in the host part is hidden."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> int:
    """`30d`, `12h`, `90m`, `45s`, `2w`, `1d12h` or plain seconds → seconds; ValueError otherwise."""
    parts = re.findall(r"(\d+)\s*([smhdw]?)", text.strip().lower())
    if not text.strip() or re.sub(r"(\d+)\s*([smhdw]?)", "", text.strip().lower()).strip():
        raise ValueError(f"{text!r} is not an age; write e.g. 30d, 12h, 90m or 2w")
    return sum(int(n) * _AGE_UNITS[u or "s"] for n, u in parts)


def format_age(seconds: int) -> str:
    """Seconds as `parse_age` reads them: 2592000 → `30d`, 5400 → `1h30m`."""
    if seconds <= 0:
        return "0"
    out = []
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, length)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def parse_size(text: str) -> int:
    """`4M`, `512K`, `2G`, `1T` or plain bytes → bytes (binary units); ValueError otherwise."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size; write e.g. 4M, 512K or 2G")
    exponent = "_kmgtp".index((m.group(2) or "_").lower())
    return int(m.group(1)) * (1 << (10 * exponent))


@dataclass(frozen=True)
class S3Location:
    """Where an S3 pool's objects live, parsed from its URL."""

    endpoint: str  # host[:port]
    secure: bool  # HTTPS (s3://) or plain HTTP (s3+http://)
    bucket: str
    prefix: str  # "" or "a/b/": prepended to every object key

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """`s3://host[:port]/bucket[/prefix]`; ValueError with a reason otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in (S3_SCHEME, S3_HTTP_SCHEME):
            raise ValueError("not an S3 URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in the URL; use credentials_file or the environment")
        if parts.query or parts.fragment:
            raise ValueError("an S3 URL takes no ?query or #fragment; put settings in the pool's table")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port is not a number between 0 and 65535") from None
        if not parts.hostname:
            raise ValueError("no host")
        path = unquote(parts.path).strip("/")
        bucket, _, prefix = path.partition("/")
        if not bucket:
            raise ValueError("no bucket")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
        components = prefix.split("/") if prefix else []
        if any(c in ("", ".", "..") for c in components):
            raise ValueError(f"the prefix {prefix!r} has an empty, '.' or '..' component")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        endpoint = f"{host}:{port}" if port is not None else host
        return cls(endpoint, parts.scheme == S3_SCHEME, bucket, f"{prefix}/" if prefix else "")

    @property
    def url(self) -> str:
        scheme = S3_SCHEME if self.secure else S3_HTTP_SCHEME
        return f"{scheme}://{self.endpoint}/{self.bucket}" + (f"/{self.prefix.rstrip('/')}" if self.prefix else "")


# Keys of a pool's table that only S3 pools take, with their defaults.
S3_ONLY = {
    "region": None,
    "path_style": None,
    "ca_bundle": None,
    "credentials_file": None,
    "access_key": None,
    "secret_key": None,
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "read_timeout": DEFAULT_READ_TIMEOUT,
    "connections": DEFAULT_S3_CONNECTIONS,
}


@dataclass(frozen=True)
class PoolSpec:
    """Where one pool lives, how much of the data it should take, and how to reach it.

    The secret key (and the access key) are left out of `repr`, so a logged or printed
    spec never shows them."""

    name: str
    url: str
    weight: float = 1.0
    capacity: int = 0
    warn_threshold: float = DEFAULT_WARN_THRESHOLD
    critical_threshold: float = DEFAULT_CRITICAL_THRESHOLD
    draining: bool = False
    offline: bool = False
    region: str | None = None
    path_style: bool | None = None
    ca_bundle: str | None = None
    credentials_file: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    connections: int = DEFAULT_S3_CONNECTIONS

    def __post_init__(self) -> None:
        if not POOL_NAME_RE.match(self.name):
            raise ConfigError(f"pool name {self.name!r} is invalid: use letters, digits, '.', '_' or '-'")
        scheme = urlsplit(self.url).scheme
        if scheme not in SUPPORTED_SCHEMES:
            raise ConfigError(
                f"pool {self.name}: unsupported URL {redact_url(self.url)!r}; "
                f"use one of: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
            )
        if not self.weight > 0:
            raise ConfigError(f"pool {self.name}: weight must be > 0, got {self.weight}")
        if self.capacity < 0:
            raise ConfigError(f"pool {self.name}: capacity must be >= 0 bytes, got {self.capacity}")
        if not 0 < self.warn_threshold <= self.critical_threshold <= 1:
            raise ConfigError(
                f"pool {self.name}: thresholds must be 0 < warn_threshold ({self.warn_threshold:g}) <= "
                f"critical_threshold ({self.critical_threshold:g}) <= 1"
            )
        if self.kind == FILE_SCHEME:
            self._check_file()
        else:
            self._check_s3()

    def _check_file(self) -> None:
        if not Path(self.path).is_absolute() or urlsplit(self.url).netloc:
            raise ConfigError(
                f"pool {self.name}: write a file pool as file:///absolute/path, got {redact_url(self.url)!r}"
            )
        given = [k for k, default in S3_ONLY.items() if getattr(self, k) != default]
        if given:
            raise ConfigError(f"pool {self.name}: {', '.join(given)} only apply to s3:// pools")

    def _check_s3(self) -> None:
        try:
            loc = self.s3
        except ValueError as exc:
            raise ConfigError(
                f"pool {self.name}: bad S3 URL {redact_url(self.url)!r}: {exc}; "
                "write it as s3://HOST[:PORT]/BUCKET[/PREFIX] (or s3+http:// for plain HTTP)"
            ) from None
        if (self.access_key is None) != (self.secret_key is None):
            raise ConfigError(f"pool {self.name}: give both access_key and secret_key, or neither")
        if self.access_key is not None and self.credentials_file is not None:
            raise ConfigError(f"pool {self.name}: give either access_key/secret_key or credentials_file, not both")
        if self.access_key == "" or self.secret_key == "":
            raise ConfigError(f"pool {self.name}: access_key and secret_key must not be empty")
        for key in ("ca_bundle", "credentials_file"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_absolute():
                raise ConfigError(f"pool {self.name}: {key} must be an absolute path, got {value!r}")
        if self.ca_bundle is not None and not loc.secure:
            raise ConfigError(f"pool {self.name}: ca_bundle only applies to s3:// (HTTPS) pools, not s3+http://")
        for key in ("connect_timeout", "read_timeout"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"pool {self.name}: {key} must be > 0 seconds, got {getattr(self, key)}")
        if not 1 <= self.connections <= MAX_S3_CONNECTIONS:
            raise ConfigError(
                f"pool {self.name}: connections must be between 1 and {MAX_S3_CONNECTIONS}, got {self.connections}"
            )

    @property
    def kind(self) -> str:
        """`file` or `s3` (plain-HTTP S3 pools included)."""
        scheme = urlsplit(self.url).scheme
        return FILE_SCHEME if scheme == FILE_SCHEME else S3_SCHEME

    @property
    def path(self) -> Path:
        """The directory of a `file://` pool."""
        return Path(unquote(urlsplit(self.url).path))

    @property
    def s3(self) -> S3Location:
        """Endpoint, bucket and prefix of an S3 pool (ValueError for a malformed URL)."""
        return S3Location.parse(self.url)

    @property
    def has_inline_secret(self) -> bool:
        return self.secret_key is not None


@dataclass(frozen=True)
class FsConfig:
    """Everything about a filesystem that is fixed at mkfs or changed by an admin."""

    pools: tuple[PoolSpec, ...]
    replicas: int = DEFAULT_REPLICAS
    write_quorum: int = 1
    block_size: int = DEFAULT_BLOCK_SIZE
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.pools:
            raise ConfigError("no pools configured: give at least one --pool")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ConfigError(f"pool names must be unique, got {names}")
        urls = [p.url.rstrip("/") for p in self.pools]
        if len(set(urls)) != len(urls):
            raise ConfigError("the same pool URL is given twice")
        _check_disjoint(self.pools)
        if not 1 <= self.replicas <= len(self.pools):
            raise ConfigError(
                f"replicas must be between 1 and the number of pools ({len(self.pools)}), got {self.replicas}"
            )
        if not 1 <= self.write_quorum <= self.replicas:
            raise ConfigError(f"write_quorum must be between 1 and replicas ({self.replicas}), got {self.write_quorum}")
        bs = self.block_size
        if not MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE or bs & (bs - 1):
            raise ConfigError(
                f"block size must be a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} bytes, got {bs}"
            )

    @property
    def has_secrets(self) -> bool:
        """Whether any pool's secret key is written in the configuration itself."""
        return any(p.has_inline_secret for p in self.pools)

    def to_toml(self) -> str:
        lines = [
            "# repfs filesystem configuration (written by repfs mkfs)",
            f"replicas = {self.replicas}",
            f"write_quorum = {self.write_quorum}",
            f"block_size = {self.block_size}",
        ]
        for p in self.pools:
            lines += ["", "[[pools]]", f"name = {_toml(p.name)}", f"url = {_toml(p.url)}", f"weight = {p.weight}"]
            for f in fields(PoolSpec):
                if f.name in ("name", "url", "weight"):
                    continue
                value = getattr(p, f.name)
                if value != f.default:
                    lines.append(f"{f.name} = {_toml(value)}")
        return "\n".join(lines) + "\n"


def _check_disjoint(pools: tuple[PoolSpec, ...]) -> None:
    """Refuse a pool that lies inside another (a directory below another pool's, or a
    prefix below another's in the same bucket): listing or wiping the outer one would
    reach the inner one's objects."""
    places: list[tuple[str, str, PoolSpec]] = []
    for p in pools:
        if p.kind == FILE_SCHEME:
            places.append(("file", str(p.path).rstrip("/") + "/", p))
        else:
            loc = p.s3
            places.append((f"{loc.endpoint}/{loc.bucket}", loc.prefix, p))
    for i, (where_a, below_a, a) in enumerate(places):
        for where_b, below_b, b in places[i + 1 :]:
            if where_a == where_b and (below_a.startswith(below_b) or below_b.startswith(below_a)):
                raise ConfigError(
                    f"pools {a.name} and {b.name} overlap: one lies inside the other; give each its own place"
                )


def _toml(value: object) -> str:
    """A TOML value: JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


# --- parsing ----------------------------------------------------------------------------

_TOP_KEYS = {"replicas", "write_quorum", "block_size", "pools"}
_POOL_KEYS = {f.name for f in fields(PoolSpec)}


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _size(value: object, where: str) -> int:
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            raise ConfigError(f"{where} must be a size in bytes or like '500G', got {value!r}") from None
    n = _integer(value, where)
    if n < 0:
        raise ConfigError(f"{where} must be >= 0, got {n}")
    return n


def parse_ratio(value: object, where: str) -> float:
    """A share: a number from 0 to 1, or a percentage string such as "80%"."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"{where} must be a share such as 0.8 or '80%', got {value!r}") from None
    else:
        number = _number(value, where)
    if not 0 < number <= 1:
        raise ConfigError(f"{where} must be more than 0 and at most 1 (100%), got {value!r}")
    return number


def _secret(value: object, where: str) -> str:
    if not isinstance(value, str):  # never echo what might be a secret
        raise ConfigError(f"{where} must be a string")
    return value


_POOL_TYPES = {
    "name": _string,
    "url": _string,
    "weight": _number,
    "capacity": _size,
    "warn_threshold": parse_ratio,
    "critical_threshold": parse_ratio,
    "draining": _boolean,
    "offline": _boolean,
    "region": _string,
    "path_style": _boolean,
    "ca_bundle": _string,
    "credentials_file": _string,
    "access_key": _secret,
    "secret_key": _secret,
    "connect_timeout": _number,
    "read_timeout": _number,
    "connections": _integer,
}
assert set(_POOL_TYPES) == _POOL_KEYS


def parse_pool(entry: object, index: int, *, source: str) -> PoolSpec:
    """One `[[pools]]` table; every value type-checked, unknown keys refused."""
    where = f"pools[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    bad = set(entry) - _POOL_KEYS
    if bad:
        raise ConfigError(f"{source}: {where}: unknown key(s) {sorted(bad)}; known: {sorted(_POOL_KEYS)}")
    if "url" not in entry:
        raise ConfigError(f"{source}: {where} needs a url")
    values: dict[str, Any] = {"name": f"pool{index + 1}"}
    try:
        for key, value in entry.items():
            values[key] = _POOL_TYPES[key](value, f"{where}.{key}")
        return PoolSpec(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_config(text: str, *, source: str = CONFIG_NAME) -> FsConfig:
    """Parse and validate a configuration; unknown keys are typos and refused."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    entries = raw.get("pools", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: pools must be an array of tables: write each pool as [[pools]]")
    pools = tuple(parse_pool(entry, i, source=source) for i, entry in enumerate(entries))
    try:
        return FsConfig(
            pools=pools,
            replicas=_integer(raw.get("replicas", DEFAULT_REPLICAS), "replicas"),
            write_quorum=_integer(raw.get("write_quorum", 1), "write_quorum"),
            block_size=_integer(raw.get("block_size", DEFAULT_BLOCK_SIZE), "block_size"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a file holding secrets that users other than its owner may read or write."""
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} holds secrets but is mode {stat.S_IMODE(st.st_mode):04o}; run: chmod 600 {path}"
        )


def read_config_file(path: Path) -> FsConfig:
    """Read a configuration file; one holding S3 secret keys must be mode 0600."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: it is not UTF-8 text") from None
    config = parse_config(text, source=str(path))
    if config.has_secrets:
        check_private(path, st, "configuration file")
    return config


def load_config(path: Path) -> FsConfig:
    try:
        return read_config_file(path)
    except FileNotFoundError:
        raise ConfigError(
            f"no repfs filesystem at {path.parent} (missing {path.name}); run 'repfs mkfs' first"
        ) from None


def pool_from_url(url: str, index: int) -> PoolSpec:
    """A pool given on the command line: `[NAME=]URL`, e.g. `file:///srv/p1`,
    `s3a=s3://host:9000/bucket/prefix` or `s3+http://127.0.0.1:8333/bucket`."""
    name = f"pool{index + 1}"
    if "=" in url.split("://", 1)[0]:
        name, url = url.split("=", 1)
    if "://" not in url:
        raise ConfigError(
            f"pool {redact_url(url)!r} is not a URL; write it as file:///absolute/path or s3://HOST[:PORT]/BUCKET[/PREFIX]"
        )
    return PoolSpec(name=name, url=url)
