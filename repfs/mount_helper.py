"""`mount.fuse.repfs`: the mount(8) helper, so that `mount -t fuse.repfs` and fstab lines work.

    mount -t fuse.repfs /var/lib/repfs/fs /mnt/repfs -o key_file=/etc/repfs/main.key,allow_other
    # /etc/fstab
    /var/lib/repfs/fs  /mnt/repfs  fuse.repfs  key_file=/etc/repfs/main.key,_netdev,allow_other  0  0

mount(8) runs it as `mount.fuse.repfs FS_DIR MOUNTPOINT [-n] [-s] [-f] [-v] -o OPTIONS`. The
options are those of repfs.mountopts (the same definitions `repfs mount -o` uses): repfs's
own (key_file=..., cache_size=..., audit, ...), kernel flags (ro, noexec, nosuid, nodev,
noatime, ...) and FUSE options (allow_other, ...), which all reach the kernel; mount(8)'s
and systemd's own (defaults, noauto, nofail, _netdev, x-systemd.*, ...) are dropped.
"""

from __future__ import annotations

import shlex
import sys

from repfs.errors import ConfigError
from repfs.mountopts import helper_call


def main(argv: list[str] | None = None) -> None:
    try:
        call = helper_call(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"mount.fuse.repfs: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if call.fake:  # mount -f: do everything but the mount
        print(f"mount.fuse.repfs: would run: repfs {shlex.join(call.args)}", file=sys.stderr)
        return
    from repfs.cli import main as repfs

    repfs(args=call.args, prog_name="repfs")


if __name__ == "__main__":
    main()
