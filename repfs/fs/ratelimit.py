"""A byte-rate limit for background work (repair, scrub), so that it leaves room for users."""

from __future__ import annotations

import trio


class RateLimit:
    """Paces callers to at most `bytes_per_second` on average; None means no limit.

    Each `take(n)` books `n` bytes on a shared timeline and waits until the booking is
    due, so concurrent callers share the rate instead of each getting all of it.
    """

    def __init__(self, bytes_per_second: float | None) -> None:
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"rate must be > 0, got {bytes_per_second}")
        self.rate = bytes_per_second
        self._next = 0.0

    async def take(self, nbytes: int) -> None:
        if self.rate is None:
            await trio.lowlevel.checkpoint()
            return
        now = trio.current_time()
        start = max(now, self._next)
        self._next = start + nbytes / self.rate
        await trio.sleep_until(start)  # pacing, not synchronisation
