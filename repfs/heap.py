"""The glibc allocator's options for the daemon: block buffers reused, memory bounded.

Blocks are buffers of megabytes, made and freed by many worker threads, several per block
written (the cached block read back, the compressed and the encrypted object). A buffer in
its own mapping costs a page fault and a zeroed page per 4 KiB every time, and an munmap:
with a 256 KiB threshold that was a third of the daemon's time writing (perf, issue 21;
18.5 s of CPU per GiB, 12.8 s with the buffers in the heap). So the threshold is fixed
above the largest default block: buffers come from the heap and freed ones are reused.
Fixing it also stops glibc from raising it on its own, and a small arena count bounds the
per-thread heaps, so the resident size stays near what the buffers in flight need.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit: blocks up to 32 MiB come from the heap
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
