"""The FUSE boundary: every exception becomes an errno, never a dead mount.

An exception other than `pyfuse3.FUSEError` escaping an operation ends pyfuse3's main
loop, so every operation is wrapped by `fuse_op`: repfs errors map to their errno,
anything unexpected is logged once with its traceback and answered with EIO.

Each operation is also reported to its Operations object's `observe(op, seconds, errno
or None, bytes)` when it has one (metrics: latency, counts and errors per operation,
bytes read and written).
"""

from __future__ import annotations

import errno
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from repfs.errors import RepfsError, StorageError

log = logging.getLogger("repfs.fuse")

P = ParamSpec("P")
R = TypeVar("R")


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_leaf_errors(sub))
        return out
    return [exc]


def to_errno(exc: BaseException, op: str) -> int:
    """The errno a caller sees for `exc`; logs what the caller cannot see."""
    leaves = _leaf_errors(exc)
    for leaf in leaves:
        if isinstance(leaf, pyfuse3.FUSEError):
            return leaf.errno
    for leaf in leaves:
        if isinstance(leaf, StorageError):
            log.error("%s: %s", op, leaf)
            return leaf.errno
        if isinstance(leaf, RepfsError):
            return leaf.errno
    for leaf in leaves:
        if isinstance(leaf, OSError) and leaf.errno == errno.ENOSPC:
            log.error("%s: local disk full: %s", op, leaf)
            return errno.ENOSPC
    log.error("%s: unexpected error", op, exc_info=exc)
    return errno.EIO


def _nbytes(op: str, result: object) -> int:
    if op == "read" and isinstance(result, bytes):
        return len(result)
    if op == "write" and isinstance(result, int):
        return result
    return 0


def fuse_op(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    op = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        observe = getattr(args[0], "observe", None) if args else None
        started = time.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except pyfuse3.FUSEError as exc:
            if observe is not None:
                observe(op, time.monotonic() - started, exc.errno, 0)
            raise
        except Exception as exc:  # noqa: BLE001 - this is the one place that must catch all
            code = to_errno(exc, op)
            if observe is not None:
                observe(op, time.monotonic() - started, code, 0)
            raise pyfuse3.FUSEError(code) from None
        if observe is not None:
            observe(op, time.monotonic() - started, None, _nbytes(op, result))
        return result

    return wrapper
