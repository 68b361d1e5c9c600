"""The per-pool deadline model: sized to the work from what the pool has shown."""

from __future__ import annotations

import pytest

from repfs.backend.deadline import ASSURED_THROUGHPUT, FLOOR, MIN_SAMPLES, PoolDeadline

MIB = 1 << 20


def trained(latency: float = 0.002, throughput: float = 400 * MIB) -> PoolDeadline:
    d = PoolDeadline(ceiling=60.0)
    for _ in range(MIN_SAMPLES * 2):
        d.observe(latency, 4096)
        d.observe(4 * MIB / throughput, 4 * MIB)
    return d


def test_a_small_request_to_a_fast_pool_gets_the_floor() -> None:
    assert trained().deadline(4096) == pytest.approx(FLOOR, rel=0.05)


def test_a_large_request_gets_at_least_the_assured_rate_however_fast_the_pool_was() -> None:
    d = trained(throughput=2000 * MIB)  # what it showed when the machine was idle
    assert d.deadline(64 * MIB) >= 64 * MIB / ASSURED_THROUGHPUT


def test_bytes_in_flight_ahead_lengthen_the_deadline_and_the_ceiling_caps_it() -> None:
    d = trained(throughput=50 * MIB)
    alone, behind = d.deadline(4 * MIB), d.deadline(4 * MIB, ahead=256 * MIB)
    assert behind > alone * 10
    assert d.deadline(100_000 * MIB) == 60.0


def test_a_slow_pool_teaches_longer_latency_deadlines() -> None:
    assert trained(latency=0.5).deadline(0) > trained(latency=0.002).deadline(0) * 3
