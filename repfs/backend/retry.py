"""The one place that retries transient failures: exponential backoff with full jitter."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ATTEMPTS = 3
DEFAULT_BASE_DELAY = 0.05
DEFAULT_MAX_DELAY = 1.0


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    deadline: float = float("inf"),
    is_transient: Callable[[Exception], bool],
) -> T:
    """Call `fn` until it returns, at most `attempts` times.

    An exception for which `is_transient` is false is raised at once. After a transient
    one, wait a random time in [0, min(max_delay, base_delay * 2**n)] (n = 0, 1, ...) and
    call again, unless the attempts are used up or the wait would end past `deadline`
    (a `trio.current_time()` value): then the last exception is raised. The deadline only
    stops new attempts; bound a whole call with a cancel scope.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(attempts):
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc) or attempt + 1 == attempts:
                raise
            delay = random.uniform(0.0, min(max_delay, base_delay * 2**attempt))
            if trio.current_time() + delay > deadline:
                raise
            log.debug("transient failure (%s); attempt %d of %d in %.3f s", exc, attempt + 2, attempts, delay)
        await trio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
