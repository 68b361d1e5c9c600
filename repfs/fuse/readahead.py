"""How far the kernel reads ahead of a sequential reader of the mount.

The kernel sends a reader's misses to the daemon in requests no bigger than the read-ahead
window of the mount's backing device (`/sys/class/bdi/<major>:<minor>/read_ahead_kb`),
128 KiB unless someone changes it: a 1 GiB file then costs 8,192 FUSE reads, each through
the event loop, the metadata and the block cache. A window of a few MiB lets the kernel ask
for 1 MiB at a time (FUSE's largest request) with several in flight. Only root may change
it; anyone else keeps the kernel's default, which is correct, just slower.

The kernel sets the window itself when the daemon answers FUSE's INIT request (never
wider than its default), so it is set after that answer: once a stat of the mount point
(made in a thread, served by the daemon like any other) returns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

from repfs import mountinfo

log = logging.getLogger(__name__)

BDI_ROOT = Path("/sys/class/bdi")
DEFAULT_READ_AHEAD = 4 << 20  # bench/README.md: cold seq-read with 128 KiB to 16 MiB windows


async def set_when_serving(mountpoint: Path, size: int) -> None:
    """`set_read_ahead` once the mount serves (a task beside the FUSE main loop)."""
    await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
    set_read_ahead(mountpoint, size)


def window_path(mountpoint: Path) -> Path | None:
    """The read_ahead_kb file of the mount at `mountpoint`, or None if nothing is mounted there."""
    m = mountinfo.topmost(mountpoint)
    return None if m is None else BDI_ROOT / m.device / "read_ahead_kb"


def set_read_ahead(mountpoint: Path, size: int) -> int | None:
    """Set the kernel's read-ahead window for the mount at `mountpoint` to `size` bytes
    (rounded down to KiB). Returns the window in force afterwards, in bytes, or None if it
    could not be read or set (then the kernel's default applies and an INFO line says why)."""
    path = window_path(mountpoint)
    if path is None:
        log.info("kernel read-ahead left as it is: %s is not in /proc/self/mountinfo", mountpoint)
        return None
    try:
        path.write_text(f"{size // 1024}\n")
        now = int(path.read_text()) * 1024
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.info("kernel read-ahead left at the kernel's default: cannot set %s: %s", path, why)
        return None
    log.debug("kernel read-ahead of %s: %d KiB", mountpoint, now // 1024)
    return now
