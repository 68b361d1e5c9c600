"""How long a request to one pool may take before repfs stops waiting for it.

A fixed timeout is wrong both ways: a minute is far too long for a frozen server (every
read and fsync stalls for it) and too short for a 64 MiB block to a busy but healthy one.
So each pool's deadline is sized to the work, from what that pool has shown lately:

    deadline = max(floor, FACTOR × p99 latency of its small requests)
               + SLACK × max((its bytes + the bytes in flight to the pool before it)
                                ÷ (a low estimate of the pool's aggregate throughput),
                             (its bytes + the bytes in flight to every pool)
                                ÷ (the sum of those estimates over the pools))

and never less than the time to move its bytes at ASSURED_THROUGHPUT (8 MiB/s: 8 s for
a 64 MiB block), capped at the pool set's `op_timeout`. Throughput is counted for the pool as a whole (the
bytes a request moved plus those in flight beside it when it started, over its time), so
eight parallel writers get eight times the time each, a journal segment or lease queued
behind large blocks on the same pool gets the time those take, and a burst after a
quiet spell is not taken for a hang. The second term is the client's own queue (its
link, its CPU): a small request to an idle pool while large blocks go to the others
waits for those too. The throughput estimate is a low one and SLACK
doubles the transfer time on top, so that a healthy pool slowed by a busy machine (the
64 MiB blocks of eight writers on two cores) is not suspected. Latency is learnt from
small requests that had no large transfer ahead of them only (the transfer term covers
that queueing). Until a pool has answered a few requests, generous defaults apply. Only
successful requests teach the model: a pool that hangs does not make its own deadline
longer.

Deadlines count only the time the daemon itself was running: a stall of its own event
loop (a paused VM, a machine swapping) moves every pending deadline on by its length
(stalls.py), and is not learnt as the pools' latency.

A read that misses its pool's deadline asks the next pool as well (a hedged request);
a write that misses it goes to a stand-in. Either way the pool becomes *suspected*: it
stops being first choice for reads until it answers again (see poolset.py).
"""

from __future__ import annotations

import math
from collections import deque

FACTOR = 4.0  # how many times its p99 latency a pool may take for a small request
FLOOR = 0.5  # seconds: never less, so that a scheduler hiccup is not a suspicion
SMALL = 256 << 10  # requests up to this size measure latency; larger ones throughput
DEFAULT_LATENCY = 0.125  # seconds, before a pool has shown its own
DEFAULT_THROUGHPUT = 4 << 20  # bytes/s, before a pool has shown its own (a slow WAN link)
MIN_THROUGHPUT = 1 << 20  # bytes/s: a deadline never assumes slower than this
WINDOW = 64  # requests remembered per kind
MIN_SAMPLES = 8  # requests before the pool's own figures are used
SLACK = 2.0  # how many times the expected transfer time a request may take
# A large request always gets the time to move its bytes at this rate, whatever the pool
# has shown: on a machine busy with other work the learnt rates fall behind, and a false
# suspicion costs a second copy of a large block (more load). A small request is not
# slowed by it: 256 KiB gets 31 ms.
ASSURED_THROUGHPUT = 8 << 20  # bytes/s


class PoolDeadline:
    """The deadline model of one pool (cheap: called around every request)."""

    def __init__(self, *, ceiling: float = math.inf) -> None:
        self.ceiling = ceiling
        self._latency: deque[float] = deque(maxlen=WINDOW)
        self._throughput: deque[float] = deque(maxlen=WINDOW)

    def observe(self, seconds: float, nbytes: int, ahead: int = 0) -> None:
        """A request of `nbytes` that succeeded in `seconds`, with `ahead` bytes of other
        requests in flight to the pool when it started."""
        if nbytes <= SMALL:
            if ahead <= SMALL:
                self._latency.append(seconds)
        elif seconds > 0:
            self._throughput.append((nbytes + ahead) / seconds)

    def latency(self) -> float:
        """The p99 latency of small requests (a default until there are enough)."""
        if len(self._latency) < MIN_SAMPLES:
            return DEFAULT_LATENCY
        ordered = sorted(self._latency)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    def throughput(self) -> float:
        """A low estimate of the pool's aggregate throughput (the 10th percentile)."""
        if len(self._throughput) < MIN_SAMPLES:
            return DEFAULT_THROUGHPUT
        ordered = sorted(self._throughput)
        return max(MIN_THROUGHPUT, ordered[len(ordered) // 10])

    def deadline(
        self, nbytes: int = 0, ahead: int = 0, *, shared_ahead: int = 0, shared_throughput: float = math.inf
    ) -> float:
        """Seconds a request moving `nbytes` may take on this pool, with `ahead` bytes of
        other requests in flight to it, and `shared_ahead` bytes in flight to every pool
        through this client, which moves `shared_throughput` bytes/s in all."""
        transfer = SLACK * max((nbytes + ahead) / self.throughput(), (nbytes + shared_ahead) / shared_throughput)
        transfer = max(transfer, nbytes / ASSURED_THROUGHPUT)
        return min(self.ceiling, max(FLOOR, FACTOR * self.latency()) + transfer)
