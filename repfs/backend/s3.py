"""`S3Pool`: a pool that is a bucket (and an optional key prefix) on an S3 server.

The object under key `a/b` is `<prefix>a/b` in the bucket. S3 PUTs are atomic and
idempotent: a reader sees the whole object or none, and objects are sent in one PUT
(never multipart), so a failed upload leaves nothing behind.

Every minio call is blocking; each runs in a worker thread under the pool's
`trio.CapacityLimiter`, which also bounds the connections to the server (`connections`
in the pool's settings). A cancelled call abandons its thread, which keeps its limiter
token until the request ends (connect and read timeouts bound that). Transient failures
(connection errors, timeouts, 5xx answers) are retried by `repfs.backend.retry`; the
errors that remain are mapped to repfs's own:

    NoSuchKey                                   ObjectNotFound
    NoSuchBucket                                PoolUnavailable ("bucket ... does not exist")
    AccessDenied, InvalidAccessKeyId,
      SignatureDoesNotMatch, ...                PoolUnavailable ("credentials rejected")
    XMinioStorageFull, InsufficientStorage,
      QuotaExceeded, EntityTooLarge, HTTP 507   PoolFull
    anything else (refused, timeout, TLS, 5xx)  PoolUnavailable

SeaweedFS answers a full store with a plain InternalError (HTTP 500, "no writable
volumes" in its own log), indistinguishable from a passing failure: it shows up as an
unavailable pool. The pool's `capacity` setting exists so that repfs can stop placing
blocks on a pool before that happens.

A PUT's payload hash (SHA-256 over HTTP, MD5 over HTTPS) is computed once per body for
all the pools it goes to at the same time (`repfs.backend.s3sign`).

TLS: `s3://` is HTTPS with the certificate and host name verified against the system's
CAs, or against `ca_bundle` only when one is given; `s3+http://` is plain HTTP.

Credentials are handed to the minio client and kept nowhere else: not in `repr`, log
lines or error messages.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import trio
import urllib3
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from repfs.backend.base import PoolUsage, check_range, short_range
from repfs.backend.credentials import Credentials, resolve
from repfs.backend.keys import check_key
from repfs.backend.retry import retry
from repfs.backend.s3sign import DIGESTS, SigningClient
from repfs.config import PoolSpec, S3Location
from repfs.errors import ConfigError, ObjectNotFound, PoolFull, PoolUnavailable, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY = 0.1
MAX_DELAY = 2.0
LIST_BATCH = 1000  # keys fetched per worker-thread call (one LIST page on most servers)

AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AccountProblem",
    }
)
FULL_CODES = frozenset(
    {"XMinioStorageFull", "InsufficientStorage", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded", "EntityTooLarge"}
)
TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"})
HTTP_INSUFFICIENT_STORAGE = 507

# Errors of the network and the HTTP client, as raised with urllib3's own retries off.
_CLIENT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, S3Error):
        return exc.response.status if exc.response is not None else None
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        code = exc._code  # the HTTP status; minio keeps it private
        return code if isinstance(code, int) else None
    return None


def is_transient(exc: Exception) -> bool:
    """Whether trying the same request again may succeed (for `retry`)."""
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return False  # an untrusted certificate does not become trusted by waiting
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return True
    if isinstance(exc, S3Error) and exc.code in TRANSIENT_CODES:
        return True
    status = _status(exc)
    return status is not None and status >= 500 and status != HTTP_INSUFFICIENT_STORAGE


def _root_cause(exc: BaseException) -> str:
    """The innermost OS-level reason of a network error, in words ("Connection refused")."""
    seen: BaseException | None = exc
    reason = ""
    for _ in range(16):  # a chain is short; never follow a cycle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            reason = seen.strerror
        if isinstance(seen, ssl.SSLError) and seen.reason:
            reason = str(seen.reason)
        if isinstance(seen, ssl.SSLCertVerificationError) and seen.verify_message:
            reason = seen.verify_message  # e.g. "unable to get local issuer certificate"
        seen = seen.__cause__ or seen.__context__
    return reason or type(exc).__name__


def _take(items: Iterator[Any], n: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for obj in items:
        out.append((obj.object_name, obj.size or 0))
        if len(out) >= n:
            break
    return out


class S3Pool:
    """A `Pool` over one bucket (and key prefix) of an S3 server."""

    def __init__(
        self,
        name: str,
        location: S3Location,
        credentials: Credentials,
        *,
        region: str | None = None,
        path_style: bool | None = None,
        ca_bundle: str | None = None,
        capacity: int = 0,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        connections: int = 16,
        attempts: int = ATTEMPTS,
    ) -> None:
        self._name = name
        self._loc = location
        self._creds_source = credentials.source
        self._capacity = capacity
        self._read_timeout = read_timeout
        self._attempts = attempts
        self._limiter = trio.CapacityLimiter(connections)
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=connections,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,  # retries are ours (repfs.backend.retry), with backoff and jitter
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,  # None: the system's trusted CAs
        )
        self._client = SigningClient(
            location.endpoint,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            secure=location.secure,
            region=region,
            http_client=self._http,
        )
        if path_style is True:
            self._client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        elif path_style is False:
            self._client.enable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        # Bytes under the prefix: None until listed, dropped by every put and delete.
        self._used: int | None = None
        self._writes = 0
        self._usage_lock = trio.Lock()

    @classmethod
    def from_spec(cls, spec: PoolSpec, credentials: Credentials | None = None) -> S3Pool:
        """The pool of a spec; credentials from `repfs.backend.credentials` unless given."""
        if spec.ca_bundle is not None and not os.access(spec.ca_bundle, os.R_OK):
            raise ConfigError(f"pool {spec.name}: cannot read ca_bundle {spec.ca_bundle}")
        return cls(
            spec.name,
            spec.s3,
            credentials if credentials is not None else resolve(spec),
            region=spec.region,
            path_style=spec.path_style,
            ca_bundle=spec.ca_bundle,
            capacity=spec.capacity,
            connect_timeout=spec.connect_timeout,
            read_timeout=spec.read_timeout,
            connections=spec.connections,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._loc.url

    @property
    def bucket(self) -> str:
        return self._loc.bucket

    @property
    def server(self) -> str:
        """The server's address as a URL, for messages."""
        return f"{'https' if self._loc.secure else 'http'}://{self._loc.endpoint}"

    def __repr__(self) -> str:
        return f"S3Pool({self._name!r}, {self.url!r})"

    # --- helpers ------------------------------------------------------------------

    def _object(self, key: str) -> str:
        return self._loc.prefix + check_key(key)

    async def _call(self, what: str, key: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread, retried while it fails transiently."""
        call = partial(fn, *args, **kwargs)

        async def attempt() -> T:
            return await trio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)

        try:
            return await retry(
                attempt, attempts=self._attempts, base_delay=BASE_DELAY, max_delay=MAX_DELAY, is_transient=is_transient
            )
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, what, key) from None

    def _error(self, exc: BaseException, what: str, key: str | None) -> StorageError:
        """One repfs error for a client error; never with credentials or a traceback."""
        pool = f"pool {self._name}"
        if isinstance(exc, S3Error):
            code = exc.code or "unknown"
            if code == "NoSuchKey" and key is not None:
                return ObjectNotFound(f"{pool}: no object {key}")
            if code == "NoSuchBucket":
                return PoolUnavailable(self._no_bucket())
            if code in AUTH_CODES:
                return PoolUnavailable(
                    f"{pool}: credentials rejected by {self.server} ({code}): check the access key and secret "
                    f"key ({self._creds_source}) and that they may use bucket {self._loc.bucket}"
                )
            if code in FULL_CODES:
                return PoolFull(f"{pool} is full: {what}: {code}")
            return PoolUnavailable(f"{pool}: {what}: {self.server} answered {code}: {exc.message or ''}".rstrip(": "))
        status = _status(exc)
        if status == HTTP_INSUFFICIENT_STORAGE:
            return PoolFull(f"{pool} is full: {what}: HTTP {status}")
        if status is not None:
            plain_to_tls = status == 400 and not self._loc.secure
            hint = "; does it serve HTTPS? then write the URL as s3://" if plain_to_tls else ""
            return PoolUnavailable(f"{pool}: {what}: {self.server} answered HTTP {status}{hint}")
        if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
            reason = _root_cause(exc)
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in reason:
                return PoolUnavailable(
                    f"{pool}: the TLS certificate of {self.server} is not trusted ({reason}); "
                    "if the server uses a private CA, give its certificate with ca_bundle (mkfs: --ca-bundle)"
                )
            hint = "; does it serve plain HTTP? then write the URL as s3+http://" if "WRONG_VERSION" in reason else ""
            return PoolUnavailable(f"{pool}: TLS with {self.server} failed: {reason}{hint}")
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return PoolUnavailable(f"{pool}: {what}: no answer from {self.server} within {self._read_timeout:g} s")
        if isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
            return PoolUnavailable(f"{pool}: cannot connect to {self.server}: {_root_cause(exc)}")
        if isinstance(exc, urllib3.exceptions.ProtocolError):
            return PoolUnavailable(f"{pool}: {what}: connection to {self.server} broken: {_root_cause(exc)}")
        return PoolUnavailable(f"{pool}: {what}: {type(exc).__name__} talking to {self.server}")

    def _no_bucket(self) -> str:
        return f"bucket {self._loc.bucket} does not exist on pool {self._name} ({self.server})"

    def _wrote(self) -> None:
        self._used = None
        self._writes += 1

    # --- set-up (mkfs) --------------------------------------------------------------

    async def bucket_exists(self) -> bool:
        """Whether the bucket exists (a HEAD: SeaweedFS's ListBuckets answers an empty list)."""
        exists = await self._call("cannot check the bucket", None, self._client.bucket_exists, self._loc.bucket)
        return bool(exists)

    async def create_bucket(self) -> None:
        """Make the bucket; one that exists already is fine."""
        await self._call("cannot create the bucket", None, self._make_bucket_sync)
        log.info("pool %s: created bucket %s on %s", self._name, self._loc.bucket, self.server)

    def _make_bucket_sync(self) -> None:
        try:
            self._client.make_bucket(self._loc.bucket)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    # --- the Pool protocol --------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        name = self._object(key)
        try:
            with DIGESTS.holding(data):  # the replicas of a block share one payload hash
                await self._call(f"cannot store {key}", key, self._client.put_body, self._loc.bucket, name, data)
        finally:
            self._wrote()

    async def get(self, key: str) -> bytes:
        name = self._object(key)
        return await self._call(f"cannot read {key}", key, self._get_sync, name)

    def _get_sync(self, name: str) -> bytes:
        response = self._client.get_object(self._loc.bucket, name)
        try:
            return response.read()  # a short body raises (urllib3 enforces Content-Length)
        finally:
            response.close()
            response.release_conn()

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        name = self._object(key)
        data = await self._call(f"cannot read {key}", key, self._get_range_sync, name, offset, length)
        if len(data) != length:
            raise short_range(self._name, key, offset, length, len(data))
        return data

    def _get_range_sync(self, name: str, offset: int, length: int) -> bytes:
        try:
            response = self._client.get_object(self._loc.bucket, name, offset=offset, length=length)
        except S3Error as exc:
            if exc.code == "InvalidRange":  # the range starts past the object's end
                return b""
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def delete(self, key: str) -> None:
        name = self._object(key)
        try:
            await self._call(f"cannot delete {key}", key, self._client.remove_object, self._loc.bucket, name)
        except ObjectNotFound:
            pass
        finally:
            self._wrote()

    async def exists(self, key: str) -> bool:
        name = self._object(key)
        try:
            await self._call(f"cannot look up {key}", key, self._client.stat_object, self._loc.bucket, name)
            return True
        except ObjectNotFound:
            pass
        # A HEAD answers a bare 404 for a missing bucket too: tell the two apart.
        if not await self.bucket_exists():
            raise PoolUnavailable(self._no_bucket())
        return False

    async def modified(self, key: str) -> float | None:
        name = self._object(key)
        try:
            st = await self._call(f"cannot look up {key}", key, self._client.stat_object, self._loc.bucket, name)
        except ObjectNotFound:
            if not await self.bucket_exists():
                raise PoolUnavailable(self._no_bucket()) from None
            return None
        return st.last_modified.timestamp() if st.last_modified is not None else None

    async def _listing(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        """(key, size) of every object under the pool's prefix + `prefix`, a page at a time.

        Each page is a fresh listing that starts after the last key seen, so a page that
        failed is fetched again by the retry, and nothing is held but one page."""
        full = self._loc.prefix + prefix
        after: str | None = None
        while True:
            batch = await self._call(
                "cannot list",
                None,
                lambda start: _take(
                    self._client.list_objects(self._loc.bucket, prefix=full, recursive=True, start_after=start),
                    LIST_BATCH,
                ),
                after,
            )
            for name, size in batch:
                key = name[len(self._loc.prefix) :]
                try:
                    check_key(key)
                except ValueError:
                    continue  # a directory marker or another program's object: not ours
                yield key, size
            if len(batch) < LIST_BATCH:
                return
            after = batch[-1][0]

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        async for key, _ in self._listing(prefix):
            yield key

    async def usage(self) -> PoolUsage:
        """Bytes of repfs's objects under the prefix (a listing, kept until the next put or
        delete of this pool) against the configured `capacity` (0: unknown)."""
        async with self._usage_lock:
            used = self._used
            if used is None:
                writes = self._writes
                used = 0
                async for _, size in self._listing(""):
                    used += size
                if writes == self._writes:  # no write of ours raced the listing
                    self._used = used
        if self._capacity:
            return PoolUsage(used=used, total=self._capacity, free=max(self._capacity - used, 0))
        return PoolUsage(used=used, total=0, free=0)

    async def ping(self) -> None:
        if not await self.bucket_exists():
            raise PoolUnavailable(self._no_bucket())

    async def close(self) -> None:
        self._http.clear()
        await trio.lowlevel.checkpoint()
