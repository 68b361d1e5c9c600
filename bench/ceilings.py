"""What the S3 servers themselves can do, measured with a plain S3 client in the same run.

- aggregate PUT and GET: `streams` parallel streams (repfs uploads 8 blocks at once) of
  4 MiB objects (repfs's block size), spread over the same buckets and servers the repfs
  pools use; MB/s of object bytes.
- aggregate PUT with 20 streams (JuiceFS's default --max-uploads), for reference: the
  server takes more than 8 streams give it.
- small PUT, one stream: 64 KiB objects one after another (objects/s), the most an
  fsync-per-packet writer that waits for one PUT per packet can hope for; and the same
  with `streams` at once, for reference.
- small PUT pairs: two 64 KiB objects at once, to two buckets, one pair after another
  (pairs/s): what a writer that keeps each fsync'd packet on two pools waits for, since
  the pair ends with the slower of its two PUTs.

The data is random (incompressible), each object distinct.
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from minio import Minio

from bench.servers import Bucket, S3Site

MiB = 1 << 20


@dataclass(frozen=True)
class CeilingSizes:
    total_bytes: int  # for the aggregate PUT/GET
    object_bytes: int = 4 * MiB
    streams: int = 8
    wide_streams: int = 20  # JuiceFS's default --max-uploads, for reference
    small_count: int = 500
    small_bytes: int = 64 << 10


def _payload(base: bytes, i: int) -> bytes:
    """A distinct object: the shared random buffer with its index stamped in front."""
    tag = i.to_bytes(8, "big")
    return tag + base[len(tag) :]


def aggregate(
    site: S3Site, buckets: list[Bucket], sizes: CeilingSizes, streams: int, total: int, *, read_back: bool = True
) -> dict[str, Any]:
    """PUT `total` bytes of 4 MiB objects in `streams` parallel streams, then GET them back."""
    clients = {b.name: site.client(b.server, connections=streams) for b in buckets}
    base = os.urandom(sizes.object_bytes)
    count = max(streams, total // sizes.object_bytes)
    names = [(buckets[i % len(buckets)].name, f"ceiling/s{streams}-{i:06d}") for i in range(count)]

    def put(i: int) -> None:
        bucket, key = names[i]
        data = _payload(base, i)
        clients[bucket].put_object(bucket, key, io.BytesIO(data), len(data))

    def get(i: int) -> int:
        bucket, key = names[i]
        resp = clients[bucket].get_object(bucket, key)
        try:
            return len(resp.read())
        finally:
            resp.close()
            resp.release_conn()

    with ThreadPoolExecutor(streams) as pool:
        t0 = time.perf_counter()
        list(pool.map(put, range(count)))
        put_s = time.perf_counter() - t0
        stored = count * sizes.object_bytes
        out: dict[str, Any] = {
            "objects": count,
            "object_bytes": sizes.object_bytes,
            "streams": streams,
            "buckets": len(buckets),
            "put_s": put_s,
            "put_MBps": stored / put_s / 1e6,
        }
        if read_back:
            t0 = time.perf_counter()
            got = sum(pool.map(get, range(count)))
            get_s = time.perf_counter() - t0
            if got != stored:
                raise RuntimeError(f"GET returned {got} bytes, PUT {stored}")
            out |= {"get_s": get_s, "get_MBps": stored / get_s / 1e6}
    return out


def small_puts(site: S3Site, buckets: list[Bucket], sizes: CeilingSizes) -> dict[str, Any]:
    bucket, other = buckets[0], buckets[1 % len(buckets)]
    client: Minio = site.client(bucket.server, connections=sizes.streams)
    client2: Minio = site.client(other.server, connections=2)
    base = os.urandom(sizes.small_bytes)

    def put(i: int, to: Bucket = bucket, c: Minio = client) -> None:
        data = _payload(base, i)
        c.put_object(to.name, f"small/obj-{i:06d}", io.BytesIO(data), len(data))

    t0 = time.perf_counter()
    for i in range(sizes.small_count):
        put(i)
    single_s = time.perf_counter() - t0
    with ThreadPoolExecutor(sizes.streams) as pool:
        t0 = time.perf_counter()
        list(pool.map(put, range(sizes.small_count, 2 * sizes.small_count)))
        parallel_s = time.perf_counter() - t0
    with ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        for i in range(2 * sizes.small_count, 3 * sizes.small_count):
            pair = [pool.submit(put, i), pool.submit(put, i, other, client2)]
            for f in pair:
                f.result()
        pair_s = time.perf_counter() - t0
    return {
        "count": sizes.small_count,
        "object_bytes": sizes.small_bytes,
        "single_stream_per_s": sizes.small_count / single_s,
        "parallel_per_s": sizes.small_count / parallel_s,
        "parallel_streams": sizes.streams,
        "pair_per_s": sizes.small_count / pair_s,
        "pair_buckets": len({bucket.name, other.name}),
    }


def measure(site: S3Site, pool_buckets: int, sizes: CeilingSizes) -> dict[str, Any]:
    """All S3 ceilings, on fresh buckets laid out like repfs's pools; buckets removed after."""
    buckets = site.new_buckets("ceiling", pool_buckets)
    try:
        return {
            "aggregate": aggregate(site, buckets, sizes, sizes.streams, sizes.total_bytes),
            "aggregate_wide": aggregate(
                site, buckets, sizes, sizes.wide_streams, sizes.total_bytes // 2, read_back=False
            ),
            "small_put": small_puts(site, buckets, sizes),
        }
    finally:
        site.remove(buckets)
