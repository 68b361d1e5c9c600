"""The daemon's memory options: the glibc allocator's (block buffers reused, memory
bounded) and the cycle collector's (`tame_collector`).

Blocks are buffers of megabytes, made and freed by many worker threads, several per block
written (the cached block read back, the compressed and the encrypted object). A buffer in
its own mapping costs a page fault and a zeroed page per 4 KiB every time, and an munmap:
with a 256 KiB threshold that was a third of the daemon's time writing (perf, issue 21;
18.5 s of CPU per GiB, 12.8 s with the buffers in the heap). So the threshold is fixed
above the largest default block: buffers come from the heap and freed ones are reused.
Fixing it also stops glibc from raising it on its own, and a small arena count bounds the
per-thread heaps, so the resident size stays near what the buffers in flight need.

Fixing the threshold leaves the trim threshold at 128 KiB, though: every freed block at the
top of a heap went back to the kernel and the next one faulted its pages in again (260,000
to 355,000 minor faults per GiB written to the embedded default, over 1 GiB of zeroed
pages). Free memory up to TRIM_THRESHOLD is now kept for reuse: 22,000 to 25,000 faults
per GiB, daemon CPU 7.8-8.6 -> 5.9-6.1 s per GiB, peak RSS 144-150 -> 149-157 MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit: blocks up to 32 MiB come from the heap
ARENA_MAX = 2
TRIM_THRESHOLD = 64 << 20  # free memory kept per heap: a dozen 4 MiB blocks in flight


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
    ok = all(
        mallopt(option, value)
        for option, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_ARENA_MAX, ARENA_MAX),
        )
    )
    if not ok:
        log.debug("mallopt refused the allocator options")
    return ok


# Collections of the youngest generation at most every this many allocations (Python's
# default is 700): a FUSE request makes and drops hundreds of objects, few of them in cycles.
GC_YOUNG_THRESHOLD = 20_000


def tame_collector() -> None:
    """Once the daemon is set up: the objects alive then (modules, the layers, the
    metadata's caches) are moved out of the collector's reach, as they live as long as the
    daemon, and the youngest generation is collected less often. The cycle collector
    traversing them was 2.5% of the event loop's CPU in an rsync (perf, issue 21)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
