"""What the web process measures and limits per request: Prometheus metrics (served on
their own address with `repfs web --metrics ADDR:PORT`) and a rate limit per token.

The limit is a token bucket per credential (a session token or an API key, by its
digest): `rate` requests a second on average, bursts of `burst`; past it `429` with
`Retry-After`. The buckets live in memory, a bounded number of them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MAX_BUCKETS = 100_000


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("repfs_web_requests", "Requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)  # fmt: skip
        self.seconds = Histogram("repfs_web_request_seconds", "Time to answer a request (to its headers), by route",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
        self.bytes_in = Counter("repfs_web_received_bytes", "File bytes received (uploads)", registry=self.registry)
        self.bytes_out = Counter("repfs_web_sent_bytes", "File bytes sent (downloads)", registry=self.registry)
        self.uploads = Gauge("repfs_web_active_uploads", "Requests writing upload bytes now", registry=self.registry)
        self.failed_logins = Counter("repfs_web_failed_logins", "Refused sign-ins", registry=self.registry)
        self.limited = Counter("repfs_web_rate_limited", "Requests refused by the rate limit (429)",
                               registry=self.registry)  # fmt: skip


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[bytes, _Bucket] = {}

    def wait_for(self, credential: str) -> float:
        """0 if a request with `credential` may go now (and counts it), else the seconds
        until it may."""
        if self.rate <= 0:
            return 0.0
        key = hashlib.sha256(credential.encode()).digest()
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:  # bounded: forget the idlest half
                for k in sorted(self._buckets, key=lambda k: self._buckets[k].at)[: MAX_BUCKETS // 2]:
                    del self._buckets[k]
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate
