"""The mount options repfs accepts: one definition for `repfs mount -o` and for the
mount(8) helper `mount.fuse.repfs` (fstab lines, `mount -t fuse.repfs`).

Every option is checked here before the daemon touches a pool, so a typo is one line on
the terminal and nothing else. Kernel mount flags (`ro`, `noexec`, `nosuid`, `nodev`,
`noatime`, ...) go to the kernel through libfuse; FUSE options (`allow_other`, ...) to
libfuse; options that only concern mount(8) or systemd are dropped by the helper.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from repfs.errors import ConfigError

# Flags of mount(2) that libfuse passes to the kernel.
KERNEL_FLAGS = frozenset(
    {
        "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync",
        "dirsync", "atime", "noatime", "nodiratime", "symfollow", "nosymfollow",
    }
)  # fmt: skip
# Options of libfuse and the FUSE kernel module that make sense for repfs.
FUSE_FLAGS = frozenset({"allow_other", "allow_root", "auto_unmount", "default_permissions"})
FUSE_VALUED = frozenset({"max_read"})
# Options repfs sets itself: a user's value would break `repfs umount` and status.
RESERVED = frozenset({"fsname", "subtype"})

# mount(8)/systemd options with no meaning for the filesystem: the helper drops them.
MOUNT8_ONLY = frozenset({"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "nofail", "_netdev"})
MOUNT8_PREFIXES = ("comment=", "x-")

# Options the helper turns into `repfs mount` options (`-` may be written `_`).
HELPER_VALUED = {
    "key_file": "--key-file",
    "cache_dir": "--cache-dir",
    "cache_size": "--cache-size",
    "max_dirty": "--max-dirty",
    "log": "--log",
    "admin_socket": "--admin-socket",
    "user_socket": "--user-socket",
    "admin_group": "--admin-group",
    "metrics": "--metrics",
    "metrics_web_config": "--metrics-web-config",
    "heartbeat": "--heartbeat",
    "repair_rate": "--repair-rate",
    "usage_interval": "--usage-interval",
    "history_interval": "--history-interval",
    "retention_interval": "--retention-interval",
    "expire_rate": "--expire-rate",
    "hash_rate": "--hash-rate",
    "pack_max": "--pack-max",
    "read_ahead": "--read-ahead",
}
HELPER_FLAGS = {
    "audit": "--audit",
    "debug": "--debug",
    "take_over": "--take-over",
    "allow_non_empty": "--allow-non-empty",
}


def split(values: Iterable[str]) -> list[str]:
    """`-o a,b -o c` → ["a", "b", "c"]."""
    return [o.strip() for value in values for o in value.split(",") if o.strip()]


def fuse_options(values: Iterable[str]) -> frozenset[str]:
    """Check options for `-o` (kernel flags and FUSE options); ConfigError names the bad one."""
    out = set()
    for opt in split(values):
        key, eq, value = opt.partition("=")
        if key in RESERVED:
            raise ConfigError(f"mount option {key} is set by repfs itself; leave it out")
        if key in FUSE_VALUED:
            if not eq or not value.isdigit():
                raise ConfigError(f"mount option {key} needs a number ({key}=N)")
        elif eq or key not in KERNEL_FLAGS | FUSE_FLAGS:
            known = ", ".join(sorted(KERNEL_FLAGS | FUSE_FLAGS | {f"{k}=N" for k in FUSE_VALUED}))
            raise ConfigError(f"unknown mount option {opt!r}; repfs knows: {known}")
        out.add(opt)
    if {"ro", "rw"} <= out:
        raise ConfigError("mount options ro and rw contradict each other")
    return frozenset(out)


@dataclass(frozen=True)
class HelperCall:
    """What `mount.fuse.repfs FS_DIR MOUNTPOINT -o ...` becomes."""

    args: list[str]  # for `repfs mount`
    fake: bool  # mount -f: say what would run, mount nothing


def helper_call(argv: list[str]) -> HelperCall:
    """Translate mount(8)'s call of the helper: `FS_DIR MOUNTPOINT [-n] [-s] [-f] [-v] [-o OPTIONS]`."""
    if len(argv) < 2 or argv[0].startswith("-") or argv[1].startswith("-"):
        raise ConfigError("usage: mount.fuse.repfs FS_DIR MOUNTPOINT [-o OPTIONS]")
    source, mountpoint, rest = argv[0], argv[1], argv[2:]
    opts: list[str] = []
    fake = False
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "-o":
            if i + 1 >= len(rest):
                raise ConfigError("-o needs options")
            opts.append(rest[i + 1])
            i += 2
            continue
        if arg.startswith("-o"):
            opts.append(arg[2:])
        elif arg == "-f":
            fake = True
        elif arg not in ("-n", "-s", "-v"):  # no mtab, sloppy, verbose: nothing to do
            raise ConfigError(f"unknown argument {arg!r}")
        i += 1
    args = ["mount", source, mountpoint]
    fuse: list[str] = []
    for opt in split(opts):
        key, eq, value = opt.partition("=")
        name = key.replace("-", "_")
        if name in HELPER_VALUED:
            if not eq or not value:
                raise ConfigError(f"option {key} needs a value ({key}=...)")
            args += [HELPER_VALUED[name], value]
        elif name in HELPER_FLAGS and not eq:
            args.append(HELPER_FLAGS[name])
        elif opt in MOUNT8_ONLY or opt.startswith(MOUNT8_PREFIXES):
            continue
        else:
            fuse.append(opt)
    fuse_options(fuse)  # every kernel and FUSE option checked here, before anything runs
    if fuse:
        args += ["-o", ",".join(fuse)]
    return HelperCall(args, fake)
