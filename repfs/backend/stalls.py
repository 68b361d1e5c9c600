"""Time the daemon itself could not run, so that it is not held against a pool.

A deadline (deadline.py) says how long a pool may take to answer. When the daemon's own
process stops running for a while — a paused VM, a machine reclaiming memory or swapping,
a scheduler that gives both cores to others for a second — every request in flight
looks late at once, although the pools answered in time and only the daemon did not
look: without this, each of them would be suspected and hedged, the extra requests
adding load just when the machine has least to spare.

`LoopStalls.run` wakes every TICK and notes how much later than asked it woke: that
is time the event loop did not run. `lost_since(t)` is the time lost that way since `t`,
including a stall that has just ended and that the monitor has not seen yet (on waking,
trio expires every passed deadline before any task runs). A waiter whose deadline passed
moves it on by the time lost and waits again, so a deadline counts only time the daemon
was running. A pool that is slow while the daemon runs is suspected as before. Without
the monitor running (a one-shot command), nothing is counted as lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")

TICK = 0.05  # seconds between the monitor's wake-ups
GRACE = 0.02  # seconds: waking up later than this is a stall, earlier is ordinary scheduling
KEPT = 256  # stalls remembered (a deadline is never longer than a few minutes)


class LoopStalls:
    """The stalls of the event loop it runs in (one per pool set)."""

    def __init__(self) -> None:
        self._stalls: deque[tuple[float, float]] = deque(maxlen=KEPT)  # (began, ended), trio clock
        self._woke: float | None = None  # when the monitor last woke; None while it is not running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The monitor: runs until cancelled."""
        self._woke = trio.current_time()
        task_status.started()
        try:
            while True:
                await trio.sleep(TICK)
                now = trio.current_time()
                if now - self._woke - TICK > GRACE:
                    self._stalls.append((self._woke + TICK, now))
                self._woke = now
        finally:
            self._woke = None

    def lost_since(self, start: float) -> float:
        """Seconds (trio clock) the event loop did not run since `start`."""
        if self._woke is None:
            return 0.0
        lost = sum(ended - max(began, start) for began, ended in self._stalls if ended > start)
        now = trio.current_time()
        if now - self._woke - TICK > GRACE:  # a stall that has just ended
            lost += now - max(self._woke + TICK, start)
        return lost

    async def wait(self, event: trio.Event, seconds: float) -> bool:
        """Wait for `event` for `seconds` of running time; whether it was set."""
        start = trio.current_time()
        lost = 0.0
        while True:
            with trio.move_on_at(start + seconds + lost):
                await event.wait()
            if event.is_set():
                return True
            now_lost = self.lost_since(start)
            if now_lost <= lost:
                return False
            lost = now_lost

    async def within(self, seconds: float, fn: Callable[[], Awaitable[T]]) -> T:
        """`fn()` given `seconds` of running time: if its deadline passes after a stall, it
        is asked again for what the stall took from it (so `fn` must be safe to repeat).
        Raises trio.TooSlowError when it takes longer."""
        start = trio.current_time()
        lost = 0.0
        while True:
            with trio.move_on_at(start + seconds + lost):
                return await fn()
            now_lost = self.lost_since(start)
            if now_lost <= lost:
                raise trio.TooSlowError
            lost = now_lost
