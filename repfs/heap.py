"""Keep the daemon's memory close to what it uses (glibc's allocator only).

Blocks are buffers of megabytes, made and freed by many worker threads. By default glibc
raises its mmap threshold after the first large free, so later block buffers come from
per-thread heaps that seldom shrink, and the resident size stays near the worst moment
of every thread. A fixed threshold keeps block buffers in their own mappings, returned to
the system when freed, and a small arena count bounds the per-thread heaps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 << 10
ARENA_MAX = 2


def tame_allocator() -> bool:
    """Set the glibc allocator's options; False where there is no glibc (nothing to do)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))
    if not ok:
        log.debug("mallopt refused the allocator options")
    return ok
