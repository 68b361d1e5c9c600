"""What is mounted where, from /proc/self/mountinfo: checks before a mount, and which
daemon a mount point belongs to (for `repfs umount`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from repfs.errors import SetupError

FSNAME_PREFIX = "repfs:"  # a repfs mount's source is "repfs:FS_DIR"


@dataclass(frozen=True)
class Mount:
    target: str
    fstype: str
    source: str
    device: str  # "major:minor" of the mount's device (st_dev)


def _unescape(field: str) -> str:
    """mountinfo writes spaces, tabs, newlines and backslashes as octal escapes."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def mounts() -> list[Mount]:
    """Every mount this process sees, in mount order (later ones stacked on earlier)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.append(Mount(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2]), fields[2]))
    return out


def topmost(path: Path) -> Mount | None:
    """The mount a process sees at `path` (the last one mounted there), if any."""
    target = os.path.abspath(path)
    found = [m for m in mounts() if m.target == target]
    return found[-1] if found else None


def fs_dir_of(mountpoint: Path) -> Path | None:
    """The FS_DIR of the repfs filesystem mounted (topmost) at `mountpoint`."""
    m = topmost(mountpoint)
    if m is None or not m.source.startswith(FSNAME_PREFIX):
        return None
    return Path(m.source[len(FSNAME_PREFIX) :])


def mountpoints_of(fs_dir: Path) -> list[str]:
    """Where the filesystem of `fs_dir` is mounted."""
    source = FSNAME_PREFIX + str(fs_dir)
    return [m.target for m in mounts() if m.source == source]


def check_mountpoint(path: Path, *, allow_non_empty: bool) -> None:
    """Refuse a mount point that would surprise: missing, not a directory, already a
    mount point (a second mount would hide the first, and umount would find the wrong
    daemon), or not empty (its files would be hidden) unless allowed."""
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise SetupError(f"mount point {path} {what}; create it first (mkdir -p {path})")
    m = topmost(path)
    if m is not None:
        by = f"repfs filesystem {m.source[len(FSNAME_PREFIX) :]}" if m.source.startswith(FSNAME_PREFIX) else m.fstype
        raise SetupError(f"{path} is already a mount point ({by}); unmount it first or choose another directory")
    try:
        entries = next(os.scandir(path), None) is not None
    except OSError as exc:
        raise SetupError(f"cannot read mount point {path}: {exc.strerror}") from None
    if entries and not allow_non_empty:
        raise SetupError(
            f"mount point {path} is not empty: its files would be hidden while mounted; "
            "empty it, choose another directory, or pass --allow-non-empty"
        )
