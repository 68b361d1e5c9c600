"""One payload hash per object body, however many S3 pools it is written to.

An S3 PUT carries a hash of its body: SHA-256 in `x-amz-content-sha256`, which the
signature covers, over plain HTTP; MD5 in `Content-MD5` (beside `UNSIGNED-PAYLOAD`) over
HTTPS. The minio client hashes every request's body itself, so a block written to two S3
pools had the same bytes hashed twice: 7 to 9 % of the daemon's samples in seq-write and
parallel on S3 pools, the largest cost after encryption (bench/results/
20261204T120609Z.json's profile).

`BodyDigests` hashes a body once for all the puts of it that run at the same time (the
replicas of a block are put at once, `replicated.put_ranked`); `SigningClient` is a minio
client that sends a body with the digest it is given. The server still checks the digest
against the bytes it receives: a body changed on the way is refused as before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from minio import Minio
from minio.credentials.credentials import Credentials as MinioCredentials

SHA256_HEADER = "x-amz-content-sha256"
MD5_HEADER = "Content-MD5"


@dataclass(eq=False)
class _Entry:
    body: bytes  # held: while the entry lives, no other object can have this id
    users: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    digests: dict[str, str] = field(default_factory=dict)  # by kind: "sha256", "md5"


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def md5_base64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


class BodyDigests:
    """The digests of bodies being put, shared by the puts of the same `bytes` object.

    A put holds its body (`holding`) for all its attempts; a digest asked for meanwhile is
    computed by the first asker (in its worker thread) and reused by the others. Entries
    live only while a put of their body runs, so memory is what the puts hold anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self.computed = 0  # digests computed (a body put to two pools at once counts 1)

    @contextlib.contextmanager
    def holding(self, body: bytes) -> Iterator[None]:
        with self._lock:
            entry = self._entries.get(id(body))
            if entry is None:
                entry = self._entries[id(body)] = _Entry(body)
            entry.users += 1
        try:
            yield
        finally:
            with self._lock:
                entry.users -= 1
                if not entry.users:
                    del self._entries[id(body)]

    def _entry(self, body: bytes) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(id(body))
        return entry if entry is not None and entry.body is body else None

    def sha256(self, body: bytes) -> str:
        return self._digest(body, "sha256", sha256_hex)

    def md5(self, body: bytes) -> str:
        return self._digest(body, "md5", md5_base64)

    def _digest(self, body: bytes, kind: str, compute: Callable[[bytes], str]) -> str:
        entry = self._entry(body)
        if entry is None:  # no put holds it: nobody to share with
            self.computed += 1
            return compute(body)
        with entry.lock:  # a second asker waits for the first one's result
            digest = entry.digests.get(kind)
            if digest is None:
                self.computed += 1
                digest = entry.digests[kind] = compute(body)
            return digest


DIGESTS = BodyDigests()  # one per process: replicas of a block go to pools of one daemon


class SigningClient(Minio):
    """A minio client whose object PUTs take the body's digest from `BodyDigests`.

    It relies on two internals of minio 7.2 (`_put_object`, `_build_headers`), pinned in
    pyproject.toml; `tests/s3/test_s3_pool.py` checks against a real server that the
    digest sent is the one checked.
    """

    def put_body(self, bucket: str, name: str, body: bytes, digests: BodyDigests = DIGESTS) -> None:
        """One PUT of `body` (never multipart), its digest computed once per body."""
        headers: dict[str, Any] = {"Content-Type": "application/octet-stream"}
        if self._base_url.is_https:
            headers[MD5_HEADER] = digests.md5(body)  # minio sends UNSIGNED-PAYLOAD beside it
        else:
            headers[SHA256_HEADER] = digests.sha256(body)
        self._put_object(bucket, name, body, headers)

    def _build_headers(
        self,
        host: str,
        headers: dict[str, Any] | None = None,
        body: bytes | None = None,
        creds: MinioCredentials | None = None,
    ) -> tuple[dict[str, Any], datetime]:
        given = (headers or {}).get(SHA256_HEADER)
        if given is None or body is None:
            return super()._build_headers(host, headers, body, creds)
        # minio would hash the body again: build the rest without it, then put the digest back
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built[SHA256_HEADER] = given
        return built, date
