"""SeaweedFS for the benchmark: one or more `weed server` processes on 127.0.0.1.

The servers come from tests/seaweed.py (free loopback ports, -volume.max and a small
-master.volumeSizeLimitMB, readiness polled with a deadline, SIGTERM when we die). Every
system gets buckets of its own, removed when the system is done so that the disk holds
one system's data at a time (SeaweedFS drops a non-empty bucket with its volumes).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.seaweed import WeedServer, free_ports, start_all, stop_all  # noqa: E402

__all__ = ["Bucket", "S3Site", "WeedServer", "free_ports"]


@dataclass(frozen=True)
class Bucket:
    server: WeedServer
    name: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def http_url(self) -> str:
        return f"http://{self.server.endpoint}/{self.name}"


class S3Site:
    """`count` SeaweedFS servers; a system's buckets go to servers 1, 2, ... in turn."""

    def __init__(self, base: Path, count: int = 1) -> None:
        self.base = base
        self.servers = [WeedServer(base / f"weed{i + 1}", volume_size_mb=64, volume_max=200) for i in range(count)]
        self.buckets: list[Bucket] = []

    def __enter__(self) -> S3Site:
        start_all(self.servers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        stop_all(self.servers)

    @property
    def access_key(self) -> str:
        return self.servers[0].access_key

    @property
    def secret_key(self) -> str:
        return self.servers[0].secret_key

    def client(self, server: WeedServer, connections: int = 16, timeout: float = 60.0) -> Minio:
        http = urllib3.PoolManager(
            maxsize=connections,
            timeout=urllib3.Timeout(connect=10.0, read=timeout),
            retries=urllib3.Retry(total=3, backoff_factor=0.2),
        )
        return Minio(
            server.endpoint,
            access_key=server.access_key,
            secret_key=server.secret_key,
            secure=False,
            region="us-east-1",
            http_client=http,
        )

    def new_buckets(self, prefix: str, count: int) -> list[Bucket]:
        """`count` fresh buckets named PREFIX-N, spread over the servers."""
        out = []
        for i in range(count):
            server = self.servers[i % len(self.servers)]
            bucket = Bucket(server, f"{prefix}-{i + 1}")
            self.client(server).make_bucket(bucket.name)
            self.buckets.append(bucket)
            out.append(bucket)
        return out

    def remove(self, buckets: list[Bucket]) -> None:
        """Drop the buckets with everything in them (frees the servers' disk)."""
        for b in buckets:
            with contextlib.suppress(S3Error, urllib3.exceptions.HTTPError, OSError):
                self.client(b.server).remove_bucket(b.name)
            if b in self.buckets:
                self.buckets.remove(b)
