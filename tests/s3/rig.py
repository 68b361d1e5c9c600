"""Tools the S3 tests share: `S3Server` (what a test needs of an S3 server, SeaweedFS or
Ceph RGW), credentials files, the repfs CLI with a chosen environment, and `S3Repfs`, a
real mount whose pools are buckets on such servers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from repfs.backend.credentials import ENV_PAIRS, Credentials
from tests.helpers import REPFS, Repfs, run_repfs


class S3Server(Protocol):
    """An S3 server with one identity and tools to look behind repfs's back:
    `tests.seaweed.WeedServer` and `tests.ceph.CephCluster` (its radosgw) both are one."""

    @property
    def tls(self) -> bool: ...
    @property
    def endpoint(self) -> str: ...  # host:port
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    def url(self, bucket: str, prefix: str = "") -> str: ...  # the repfs pool URL
    def make_bucket(self, name: str | None = None) -> str: ...
    def drop_buckets(self) -> None: ...
    def bucket_exists(self, name: str) -> bool: ...
    def put_object(self, bucket: str, name: str, data: bytes) -> None: ...
    def get_object(self, bucket: str, name: str) -> bytes: ...
    def remove_object(self, bucket: str, name: str) -> None: ...
    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]: ...


def credentials_of(server: S3Server) -> Credentials:
    return Credentials(server.access_key, server.secret_key, "test")


def write_credentials(path: Path, server: S3Server, *, mode: int = 0o600, secret: str | None = None) -> Path:
    """A repfs credentials file for `server` (with another secret key if `secret` is given)."""
    path.write_text(f'access_key = "{server.access_key}"\nsecret_key = "{secret or server.secret_key}"\n')
    path.chmod(mode)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any S3 credentials, plus `extra`."""
    names = {name for pair in ENV_PAIRS for name in pair}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra)
    return env


def s3_env(server: S3Server, *, secret: str | None = None) -> dict[str, str]:
    return clean_env(REPFS_S3_ACCESS_KEY=server.access_key, REPFS_S3_SECRET_KEY=secret or server.secret_key)


def repfs_cli(*args: str, env: Mapping[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The repfs CLI with exactly `env` as its environment; never reads standard input."""
    return subprocess.run(
        [*REPFS, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=dict(env)
    )


class S3Repfs(Repfs):
    """A repfs filesystem whose pools are a fresh bucket on each of `servers` (keys under
    `prefix`), with the servers' credentials in a file that repfs.toml names (one file for
    all pools: the servers must share one identity)."""

    def __init__(
        self,
        base: Path,
        servers: Sequence[S3Server],
        *,
        replicas: int = 2,
        block_size: str = "64K",
        prefix: str = "fs",
    ) -> None:
        super().__init__(base, npools=0, replicas=replicas, block_size=block_size)
        self.servers = list(servers)
        self.buckets = [s.make_bucket() for s in self.servers]
        self.prefix = prefix
        self.pool_urls = [s.url(b, prefix) for s, b in zip(self.servers, self.buckets, strict=True)]
        self.credentials = write_credentials(base / "s3.credentials", self.servers[0])

    def __repr__(self) -> str:
        return f"S3Repfs({self.base})"

    def mkfs_args(self) -> list[str]:
        args = ["mkfs", str(self.fs_dir), "--key-file", str(self.key), "--credentials-file", str(self.credentials)]
        for i, url in enumerate(self.pool_urls):
            args += ["--pool", f"s3p{i + 1}={url}"]
        return [*args, "--replicas", str(self.replicas), "--block-size", self.block_size]

    def mkfs(self, *extra: str) -> None:
        run_repfs(*self.mkfs_args(), *extra, check=True)

    def bucket_objects(self) -> dict[str, dict[str, int]]:
        """Pool name → (object name → size) of everything under the prefix."""
        return {
            f"s3p{i + 1}": s.objects(b, f"{self.prefix}/")
            for i, (s, b) in enumerate(zip(self.servers, self.buckets, strict=True))
        }
