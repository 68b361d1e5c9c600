"""The space of each pool as the store knows it: capacity, thresholds, usage, fullness.

A pool takes no new blocks while it is full: for `FULL_BACKOFF` seconds after it said so
(ENOSPC, a full bucket), and while it is used past its critical threshold, a share of its
configured `capacity`, else of the total it reports. Usage is measured now and then
(backend/usage.py, through `note_usage`) and kept up to date in between from the store's
own writes (`count`). Crossing a threshold is logged once, in either direction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from repfs.backend.base import PoolUsage

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.80, 0.90)  # warn, critical: shares of a pool's capacity
# Seconds a pool that said "full" gets no new blocks before it is tried again: short, so
# that space freed on it (by repfs's deletes or by hand) is used again within seconds.
FULL_BACKOFF = 5.0


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class PoolSpace:
    """A pool's space as the store knows it (None: not measured yet)."""

    used: int | None
    total: int | None  # the capacity thresholds apply to: configured, else reported
    reported_total: int | None
    free: int | None
    capacity: int  # configured; 0 = none
    ratio: float | None
    warn: float
    critical: float
    level: str  # unknown, ok, warn, critical
    full: bool


@dataclass
class _Book:
    capacity: int
    thresholds: tuple[float, float]
    usage: PoolUsage | None = None
    level: str = "unknown"
    full_until: float = 0.0


class SpaceBook:
    """Space accounting for the pools of one store, by pool name."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}

    def add(self, name: str, capacity: int = 0, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> None:
        self._books[name] = _Book(int(capacity), thresholds)

    def remove(self, name: str) -> None:
        self._books.pop(name, None)

    def full(self, name: str) -> bool:
        """Whether `name` takes no new blocks now: it said so lately, or it is used past
        its critical threshold."""
        if time.monotonic() < self._books[name].full_until:
            return True
        return self._level_of(name) == "critical"

    def mark_full(self, name: str, exc: Exception) -> None:
        """The pool said it has no space: no new blocks for `FULL_BACKOFF` seconds."""
        if not self.full(name):
            log.warning("pool %s is full and takes no new blocks for %g s: %s", name, FULL_BACKOFF, exc)
        self._books[name].full_until = time.monotonic() + FULL_BACKOFF

    def set_capacity(self, name: str, capacity: int) -> None:
        self._books[name].capacity = int(capacity)
        self._check_level(name)

    def set_thresholds(self, name: str, warn: float, critical: float) -> None:
        if not 0 < warn <= critical <= 1:
            raise ValueError(f"need 0 < warn ({warn}) <= critical ({critical}) <= 1")
        self._books[name].thresholds = (warn, critical)
        self._check_level(name)

    def note_usage(self, name: str, used: int, total: int = 0, free: int = 0) -> None:
        """The bytes a pool holds and has, as measured."""
        if name not in self._books:
            return
        self._books[name].usage = PoolUsage(used=used, total=total, free=free)
        self._check_level(name)

    def count(self, name: str, delta: int) -> None:
        """`delta` bytes were stored on (or, negative, deleted from) the pool."""
        book = self._books.get(name)
        if book is None or book.usage is None:
            return
        u = book.usage
        free = max(0, u.free - delta) if u.total > 0 else u.free
        book.usage = PoolUsage(used=max(0, u.used + delta), total=u.total, free=free, device=u.device)
        if book.level != self._level_of(name):
            self._check_level(name)

    def space(self, name: str) -> PoolSpace:
        """What is known of a pool's space now, against its capacity and thresholds."""
        book = self._books[name]
        u = book.usage
        warn, critical = book.thresholds
        return PoolSpace(
            used=u.used if u else None,
            total=self._effective_total(name),
            reported_total=u.total if u else None,
            free=u.free if u else None,
            capacity=book.capacity,
            ratio=self._ratio(name),
            warn=warn,
            critical=critical,
            level=self._level_of(name),
            full=self.full(name),
        )

    def _effective_total(self, name: str) -> int | None:
        book = self._books[name]
        if book.capacity > 0:
            return book.capacity
        u = book.usage
        return u.total if u is not None and u.total > 0 else None

    def _ratio(self, name: str) -> float | None:
        """Used share of the capacity (configured, else the pool's own total: then what the
        whole disk has in use, whoever wrote it); None when unknown."""
        book = self._books[name]
        u = book.usage
        if u is None:
            return None
        if book.capacity > 0:
            return u.used / book.capacity
        if u.total > 0:
            return (u.total - u.free) / u.total
        return None

    def _level_of(self, name: str) -> str:
        ratio = self._ratio(name)
        if ratio is None:
            return "unknown"
        warn, critical = self._books[name].thresholds
        return "critical" if ratio >= critical else "warn" if ratio >= warn else "ok"

    def _check_level(self, name: str) -> None:
        book = self._books[name]
        level = self._level_of(name)
        was, book.level = book.level, level
        if level == was or (was == "unknown" and level == "ok"):
            return
        space = self.space(name)
        pct = f"{(space.ratio or 0) * 100:.1f}% of {human_size(space.total or 0)} used"
        if level == "critical":
            log.warning(
                "pool %s is over its critical threshold (%s, critical at %g%%): it takes no new blocks",
                name, pct, space.critical * 100,
            )  # fmt: skip
        elif level == "warn":
            log.warning("pool %s is over its warn threshold (%s, warn at %g%%)", name, pct, space.warn * 100)
        else:
            log.info("pool %s is back under its thresholds (%s)", name, pct)
