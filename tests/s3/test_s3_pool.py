"""S3Pool against real servers: layout under the prefix, paging, error mapping, TLS.

Tests that take `s3_server` run on SeaweedFS and on Ceph RGW; the TLS tests use SeaweedFS.
The common `Pool` contract runs over S3Pool in tests/unit/test_pool_conformance.py.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import urllib3
from minio.error import S3Error

from repfs.backend import s3 as s3mod
from repfs.backend.base import Pool
from repfs.backend.credentials import Credentials
from repfs.backend.keys import SUPERBLOCK_KEY, block_key
from repfs.backend.poolset import PoolSet
from repfs.backend.replicated import ReplicatedStore
from repfs.backend.s3 import S3Pool
from repfs.backend.s3sign import DIGESTS, BodyDigests, md5_base64, sha256_hex
from repfs.config import PoolSpec
from repfs.errors import ConfigError, CorruptObject, ObjectNotFound, PoolUnavailable
from tests.ceph import CephCluster
from tests.s3.rig import S3Server, credentials_of
from tests.seaweed import WeedServer, free_ports

KEY = block_key(bytes(range(32)))


def pool_on(server: S3Server, bucket: str, prefix: str = "", *, secret: str | None = None, **kw: object) -> S3Pool:
    spec = PoolSpec("p1", server.url(bucket, prefix), **kw)  # type: ignore[arg-type]
    return S3Pool.from_spec(spec, Credentials(server.access_key, secret or server.secret_key, "test"))


@pytest.mark.trio
async def test_objects_live_under_the_prefix_and_foreign_ones_are_ignored(s3_server: S3Server) -> None:
    server = s3_server
    bucket = server.make_bucket()
    server.put_object(bucket, "other/app/file", b"not ours")
    server.put_object(bucket, "fs/one/blocks/.repfs-tmp-x", b"odd key")  # not a valid repfs key
    pool = pool_on(server, bucket, "fs/one", capacity=10_000)
    await pool.put(KEY, b"data")
    await pool.put(SUPERBLOCK_KEY, b"sb")
    assert server.objects(bucket) == {
        "other/app/file": 8,
        "fs/one/blocks/.repfs-tmp-x": 7,
        f"fs/one/{KEY}": 4,
        "fs/one/superblock": 2,
    }
    assert {k async for k in pool.list()} == {KEY, SUPERBLOCK_KEY}
    usage = await pool.usage()
    assert (usage.used, usage.total, usage.free) == (6, 10_000, 10_000 - 6)  # only repfs objects count
    assert pool.url == f"s3+http://{server.endpoint}/{bucket}/fs/one"
    await pool.close()


@pytest.mark.trio
async def test_list_pages_through_many_keys(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3mod, "LIST_BATCH", 7)
    server = s3_server
    pool = pool_on(server, server.make_bucket(), "p")
    keys = {block_key(bytes([i]) * 32) for i in range(23)}
    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(pool.put, key, b"x")
    assert {k async for k in pool.list()} == keys
    assert {k async for k in pool.list("blocks/0")} == {k for k in keys if k.startswith("blocks/0")}
    assert (await pool.usage()).used == 23
    await pool.close()


@pytest.mark.trio
async def test_unknown_capacity_is_zero(s3_server: S3Server) -> None:
    pool = pool_on(s3_server, s3_server.make_bucket())
    await pool.put(KEY, b"abc")
    assert (await pool.usage()).used == 3
    assert (await pool.usage()).total == 0
    await pool.close()


@pytest.mark.trio
async def test_wrong_secret_is_credentials_rejected_without_the_secret(s3_server: S3Server) -> None:
    server = s3_server
    bucket = server.make_bucket()
    wrong = "Wr0ng-S3cret-" + "q" * 20
    pool = pool_on(server, bucket, secret=wrong)
    for call in (pool.ping(), pool.get(KEY), pool.put(KEY, b"x"), pool.exists(KEY)):
        with pytest.raises(PoolUnavailable, match=r"pool p1: credentials rejected") as info:
            await call
        message = str(info.value)
        assert wrong not in message and server.secret_key not in message
        assert "SignatureDoesNotMatch" in message or "AccessDenied" in message
    await pool.close()


@pytest.mark.trio
async def test_unknown_access_key_is_credentials_rejected(s3_server: S3Server) -> None:
    server = s3_server
    spec = PoolSpec("p1", server.url(server.make_bucket()))
    pool = S3Pool.from_spec(spec, Credentials("AKNOBODY", "whatever-secret", "test"))
    with pytest.raises(PoolUnavailable, match=r"credentials rejected .*InvalidAccessKeyId"):
        await pool.get(KEY)
    await pool.close()


@pytest.mark.trio
async def test_missing_bucket_is_unavailable_not_empty(s3_server: S3Server) -> None:
    server = s3_server
    pool = pool_on(server, "no-such-bucket-here")
    for call in (pool.ping(), pool.get(KEY), pool.exists(KEY), pool.put(KEY, b"x")):
        with pytest.raises(PoolUnavailable, match="bucket no-such-bucket-here does not exist on pool p1"):
            await call
    with pytest.raises(PoolUnavailable, match="does not exist"):
        [k async for k in pool.list()]
    assert not await pool.bucket_exists()
    await pool.close()


@pytest.mark.trio
async def test_nothing_listening_is_unavailable_after_quick_retries() -> None:
    port = free_ports(1)[0]
    pool = S3Pool.from_spec(PoolSpec("p1", f"s3+http://127.0.0.1:{port}/bucket"), Credentials("a", "b", "test"))
    start = time.monotonic()
    with pytest.raises(PoolUnavailable, match=rf"pool p1: cannot connect to http://127.0.0.1:{port}: .*refused"):
        await pool.get(KEY)
    assert time.monotonic() - start < 5
    await pool.close()


@pytest.mark.trio
async def test_a_put_that_failed_midway_is_retried_whole(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = s3_server
    bucket = server.make_bucket()
    pool = pool_on(server, bucket)
    real_put = pool._client.put_body
    calls = []

    def put_body(bucket_name: str, object_name: str, body: bytes, *args: Any) -> None:
        calls.append(object_name)
        real_put(bucket_name, object_name, body, *args)
        if len(calls) == 1:  # the connection breaks after the body was sent
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))

    monkeypatch.setattr(pool._client, "put_body", put_body)
    payload = os.urandom(100_000)
    hashed = DIGESTS.computed
    await pool.put(KEY, payload)
    assert len(calls) == 2
    assert DIGESTS.computed == hashed + 1  # the retry sent the digest of the first attempt
    assert server.get_object(bucket, KEY) == payload
    await pool.close()


def _poisoned(body: bytes, digests: BodyDigests) -> None:
    """Make `digests` answer with the digests of other bytes for `body` (held by the caller)."""
    entry = digests._entries[id(body)]
    entry.digests.update(sha256=sha256_hex(b"other bytes"), md5=md5_base64(b"other bytes"))


@pytest.mark.trio
async def test_a_block_put_to_two_pools_at_once_is_hashed_once(s3_server: S3Server) -> None:
    first, second = (pool_on(s3_server, s3_server.make_bucket()) for _ in range(2))
    payload = os.urandom(300_000)
    hashed = DIGESTS.computed
    async with trio.open_nursery() as nursery:  # as replicated.put_ranked puts a block's replicas
        nursery.start_soon(first.put, KEY, payload)
        nursery.start_soon(second.put, KEY, payload)
    assert DIGESTS.computed == hashed + 1
    assert await first.get(KEY) == payload and await second.get(KEY) == payload
    await first.put(KEY, payload)  # a put of its own (nothing else in flight) hashes again
    assert DIGESTS.computed == hashed + 2
    assert not DIGESTS._entries  # nothing is kept once the puts are done
    await first.close()
    await second.close()


@pytest.mark.trio
async def test_the_digest_sent_is_the_bodys_and_ceph_refuses_a_wrong_one(s3_server: S3Server) -> None:
    """The digest computed once is the body's and is the one signed. Ceph RGW checks it
    against the bytes it receives; SeaweedFS only checks the signature over it."""
    bucket = s3_server.make_bucket()
    pool = pool_on(s3_server, bucket)
    body, digests = os.urandom(50_000), BodyDigests()
    trace = io.StringIO()
    pool._client.trace_on(trace)  # type: ignore[no-untyped-call]
    pool._client.put_body(bucket, "right", body, digests)
    pool._client.trace_off()  # type: ignore[no-untyped-call]
    assert f"x-amz-content-sha256: {sha256_hex(body)}" in trace.getvalue().lower()
    assert f"content-length: {len(body)}" in trace.getvalue().lower()
    if isinstance(s3_server, CephCluster):
        with digests.holding(body):
            _poisoned(body, digests)
            with pytest.raises(S3Error, match="XAmzContentSHA256Mismatch"):
                pool._client.put_body(bucket, "wrong", body, digests)
    assert s3_server.objects(bucket) == {"right": len(body)}
    assert s3_server.get_object(bucket, "right") == body
    await pool.close()


@pytest.mark.trio
async def test_over_tls_the_md5_sent_is_checked(tls_weed: WeedServer) -> None:
    bucket = tls_weed.make_bucket()
    pool = pool_on(tls_weed, bucket, ca_bundle=str(tls_weed.ca_file))
    body, digests = os.urandom(50_000), BodyDigests()
    with digests.holding(body):
        _poisoned(body, digests)
        with pytest.raises(S3Error, match=r"BadDigest|InvalidDigest"):
            pool._client.put_body(bucket, "wrong", body, digests)
    await pool.put(KEY, body)
    assert await pool.get(KEY) == body
    assert tls_weed.objects(bucket) == {KEY: len(body)}
    await pool.close()


@pytest.mark.trio
async def test_a_cancelled_call_returns_at_once(s3_server: S3Server) -> None:
    pool = pool_on(s3_server, s3_server.make_bucket())
    with trio.move_on_after(0.001) as scope:
        await pool.put(KEY, b"x" * 1_000_000)
    assert scope.cancelled_caught
    await pool.close()


# --- TLS --------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_tls_untrusted_certificate_is_refused_by_default(tls_weed: WeedServer) -> None:
    pool = pool_on(tls_weed, tls_weed.make_bucket())
    assert pool.url.startswith("s3://")
    with pytest.raises(PoolUnavailable, match=r"certificate of https://127.0.0.1:\d+ is not trusted.*ca_bundle"):
        await pool.ping()
    await pool.close()


@pytest.mark.trio
async def test_tls_with_the_servers_ca_works(tls_weed: WeedServer) -> None:
    pool = pool_on(tls_weed, tls_weed.make_bucket(), ca_bundle=str(tls_weed.ca_file))
    await pool.put(KEY, b"secret data")
    assert await pool.get(KEY) == b"secret data"
    await pool.close()


@pytest.mark.trio
async def test_https_to_a_plain_http_server_says_so(s3_server: S3Server) -> None:
    server = s3_server
    spec = PoolSpec("p1", f"s3://{server.endpoint}/{server.make_bucket()}")
    pool = S3Pool.from_spec(spec, credentials_of(server))
    with pytest.raises(PoolUnavailable, match=r"TLS with https://.* failed.*s3\+http://"):
        await pool.ping()
    await pool.close()


def test_unreadable_ca_bundle_is_a_config_error(tmp_path: Path, weeds: list[WeedServer]) -> None:
    spec = PoolSpec("p1", "s3://127.0.0.1:1/bucket", ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="cannot read ca_bundle"):
        S3Pool.from_spec(spec, credentials_of(weeds[0]))


# --- secrets stay out of sight ------------------------------------------------------------------


def test_repr_shows_no_secret(weeds: list[WeedServer]) -> None:
    server = weeds[0]
    spec = PoolSpec("p1", server.url("bucket"), access_key=server.access_key, secret_key=server.secret_key)
    pool = S3Pool.from_spec(spec)
    for text in (repr(spec), str(spec), repr(pool), repr(credentials_of(server))):
        assert server.secret_key not in text
        assert server.access_key not in text


# --- under a replicated store -------------------------------------------------------------------


@pytest.mark.trio
async def test_a_replica_overwritten_behind_our_back_is_repaired(
    s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    server = s3_server
    buckets = [server.make_bucket() for _ in range(3)]  # three pools on one server
    pools: dict[str, Pool] = {
        f"s{i}": S3Pool.from_spec(PoolSpec(f"s{i}", server.url(b, "fs")), credentials_of(server))
        for i, b in enumerate(buckets)
    }
    poolset = PoolSet(pools, dict.fromkeys(pools, 1.0), replicas=2, write_quorum=2)
    store = ReplicatedStore(poolset)
    bid = bytes(range(32))

    def decode(obj: bytes) -> bytes:
        if obj != b"good":
            raise CorruptObject("bad")
        return obj

    holders = await store.put_block(bid, b"good")
    bucket = buckets[int(holders[0][1:])]
    server.put_object(bucket, f"fs/{block_key(bid)}", b"evil")
    with caplog.at_level(logging.WARNING):
        assert await store.get_block(bid, holders, decode) == b"good"
    assert server.get_object(bucket, f"fs/{block_key(bid)}") == b"good"
    server.remove_object(bucket, f"fs/{block_key(bid)}")
    with pytest.raises(ObjectNotFound):
        await pools[holders[0]].get(block_key(bid))
    await poolset.close()
