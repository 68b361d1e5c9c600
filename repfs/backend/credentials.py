"""S3 credentials: where they come from, checked, and never shown.

One source per pool, the first that applies:

1. `access_key` and `secret_key` in the pool's table of repfs.toml (the file must then be
   mode 0600; `repfs.config.read_config_file` checks it);
2. the pool's `credentials_file`: a TOML file, mode 0600, with

       access_key = "..."
       secret_key = "..."

3. the environment: REPFS_S3_ACCESS_KEY and REPFS_S3_SECRET_KEY, else AWS_ACCESS_KEY_ID
   and AWS_SECRET_ACCESS_KEY.

`Credentials.source` says where they came from in words that are safe to print; the keys
themselves are never in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from repfs.config import PoolSpec, check_private
from repfs.errors import ConfigError

ENV_PAIRS = (
    ("REPFS_S3_ACCESS_KEY", "REPFS_S3_SECRET_KEY"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
)
_FILE_KEYS = {"access_key", "secret_key"}


@dataclass(frozen=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    source: str  # e.g. "credentials file /etc/repfs/s3a.credentials"


def read_credentials_file(path: Path) -> Credentials:
    """Access and secret key from a TOML file that only its owner may read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    check_private(path, st, "credentials file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        # The parser's message may quote the file's text: say nothing of it.
        raise ConfigError(
            f"credentials file {path} is not valid TOML; write it as two lines: "
            'access_key = "..." and secret_key = "..."'
        ) from None
    unknown = set(data) - _FILE_KEYS
    missing = _FILE_KEYS - set(data)
    if unknown or missing:
        raise ConfigError(
            f"credentials file {path} must hold exactly access_key and secret_key"
            + (f"; unknown: {sorted(unknown)}" if unknown else "")
            + (f"; missing: {sorted(missing)}" if missing else "")
        )
    access, secret = data["access_key"], data["secret_key"]
    if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
        raise ConfigError(f"credentials file {path}: access_key and secret_key must be non-empty strings")
    return Credentials(access, secret, f"credentials file {path}")


def from_environment(environ: Mapping[str, str]) -> Credentials | None:
    """The first complete pair of environment variables, or None if there is none."""
    for access_var, secret_var in ENV_PAIRS:
        access, secret = environ.get(access_var), environ.get(secret_var)
        if access and secret:
            return Credentials(access, secret, f"environment ({access_var}, {secret_var})")
        if access or secret:
            given, needed = (access_var, secret_var) if access else (secret_var, access_var)
            raise ConfigError(f"{given} is set but {needed} is not; set both or neither")
    return None


def resolve(spec: PoolSpec, environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials of one S3 pool (ConfigError naming the pool if there are none)."""
    if spec.access_key is not None and spec.secret_key is not None:
        return Credentials(spec.access_key, spec.secret_key, "repfs.toml")
    if spec.credentials_file is not None:
        return read_credentials_file(Path(spec.credentials_file))
    try:
        creds = from_environment(os.environ if environ is None else environ)
    except ConfigError as exc:
        raise ConfigError(f"pool {spec.name}: {exc}") from None
    if creds is None:
        first_access, first_secret = ENV_PAIRS[0]
        raise ConfigError(
            f"pool {spec.name} has no S3 credentials: set credentials_file in its [[pools]] table "
            f"(or --credentials-file at mkfs), or set {first_access} and {first_secret}"
        )
    return creds
