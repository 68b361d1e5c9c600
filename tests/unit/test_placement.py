"""Weighted rendezvous hashing: stable, proportional to weight, minimal movement."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repfs.backend.placement import pool_hash, rank_pools

N_IDS = 20_000
IDS = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(N_IDS)]


def first_choices(pools: list[tuple[str, float]]) -> list[str]:
    return [rank_pools(bid, pools)[0] for bid in IDS]


def test_golden_vector() -> None:
    # Part of the on-disk format: if this changes, every block moves.
    pools = [("alpha", 1.0), ("beta", 2.0), ("gamma", 1.0), ("delta", 0.5)]
    assert rank_pools(b"\x00" * 32, pools) == GOLDEN_ZERO
    assert rank_pools(bytes(range(32)), pools) == GOLDEN_RANGE


GOLDEN_ZERO = ["beta", "gamma", "alpha", "delta"]
GOLDEN_RANGE = ["beta", "alpha", "delta", "gamma"]


def test_same_order_in_another_process() -> None:
    pools = [("alpha", 1.0), ("beta", 2.0), ("gamma", 1.0)]
    code = (
        f"from repfs.backend.placement import rank_pools as r; print(','.join(r(bytes(range(32)), {pools})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip().split(",") == rank_pools(bytes(range(32)), pools)


@given(
    st.binary(min_size=1, max_size=64),
    st.dictionaries(st.text(min_size=1, max_size=20), st.floats(0.01, 100.0), min_size=1, max_size=8),
)
def test_rank_is_a_permutation_and_deterministic(block_id: bytes, weights: dict[str, float]) -> None:
    pools = list(weights.items())
    ranked = rank_pools(block_id, pools)
    assert sorted(ranked) == sorted(weights)
    assert rank_pools(block_id, list(reversed(pools))) == ranked  # input order does not matter


@given(st.text(max_size=30), st.binary(max_size=64))
def test_pool_hash_is_in_open_unit_interval(pool: str, block_id: bytes) -> None:
    assert 0.0 < pool_hash(pool, block_id) < 1.0


def test_name_and_id_do_not_run_together() -> None:
    assert pool_hash("ab", b"c") != pool_hash("a", b"bc")


def test_first_choice_follows_weight() -> None:
    pools = [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]
    counts = Counter(first_choices(pools))
    for name, weight in pools:
        assert counts[name] / N_IDS == pytest.approx(weight / 10.0, abs=0.015), counts


def test_equal_weights_spread_evenly_over_every_rank() -> None:
    pools = [(f"p{i}", 1.0) for i in range(5)]
    for rank in range(5):
        counts = Counter(rank_pools(bid, pools)[rank] for bid in IDS[:10_000])
        assert all(c / 10_000 == pytest.approx(0.2, abs=0.02) for c in counts.values()), counts


def test_adding_a_pool_moves_only_its_share() -> None:
    old = [(f"p{i}", 1.0) for i in range(4)]
    new = [*old, ("p4", 1.0)]
    before, after = first_choices(old), first_choices(new)
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert all(a == "p4" for _, a in moved)  # blocks move only to the new pool
    assert len(moved) / N_IDS == pytest.approx(1 / 5, abs=0.015)


def test_adding_a_pool_keeps_the_order_of_the_others() -> None:
    old = [(f"p{i}", float(i + 1)) for i in range(4)]
    new = [*old, ("big", 8.0)]
    for bid in IDS[:2000]:
        assert [n for n in rank_pools(bid, new) if n != "big"] == rank_pools(bid, old)


def test_removing_a_pool_moves_only_its_blocks() -> None:
    old = [(f"p{i}", 1.0 + i) for i in range(5)]
    new = [p for p in old if p[0] != "p2"]
    before, after = first_choices(old), first_choices(new)
    for b, a in zip(before, after, strict=True):
        if b != "p2":
            assert a == b
    for bid in IDS[:2000]:  # and the replica sets of other blocks keep their order
        assert rank_pools(bid, new) == [n for n in rank_pools(bid, old) if n != "p2"]


@pytest.mark.parametrize(
    "weights", [[("a", 0.0)], [("a", -1.0)], [("a", float("inf"))], [("a", 1.0), ("a", 2.0)]]
)
def test_bad_input_refused(weights: list[tuple[str, float]]) -> None:
    with pytest.raises(ValueError, match="a"):
        rank_pools(b"x", weights)
