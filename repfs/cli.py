"""`repfs`: create, mount and unmount a filesystem; the commands for an unmounted one
(passwd, scrub, recover, fsck) are in cli_maintenance.py.

Exit codes: 0 success, 1 a runtime failure (pools, I/O), 2 bad usage or configuration,
3 wrong passphrase or key file, 4 a pool that is not part of this filesystem,
5 a filesystem already exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import click
import trio

from repfs import __version__
from repfs.cli_common import exit_code, fail, get_secret, parse_count, parse_size, read_fd, secret_options
from repfs.cli_maintenance import fsck, passwd, recover, scrub
from repfs.config import DEFAULT_BLOCK_SIZE, DEFAULT_REPLICAS, FsConfig, PoolSpec, pool_from_url
from repfs.errors import ConfigError, RepfsError, SetupError

# --- commands ----------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="repfs")
def main() -> None:
    """repfs: a filesystem whose files are stored compressed, encrypted and replicated on
    several storage pools. Create one with `repfs mkfs`, then `repfs mount` it."""


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="[NAME=]URL",
    help="A pool (repeat for each pool): file:///srv/pool1, s3://HOST[:PORT]/BUCKET[/PREFIX] (HTTPS) or "
    "s3+http://HOST[:PORT]/BUCKET[/PREFIX] (plain HTTP). Names default to pool1, pool2, ...",
)
@click.option(
    "--pools-file",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read pools ([[pools]] tables) and settings from this TOML file instead of --pool options. "
    "It must be mode 0600 if it holds S3 secret keys.",
)
@click.option(
    "--credentials-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="S3 credentials for the S3 pools that name none: a TOML file, mode 0600, with access_key and "
    "secret_key. Its path goes into repfs.toml, so mount finds it. Without it they come from "
    "REPFS_S3_ACCESS_KEY/REPFS_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), which mount "
    "then needs too.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A PEM file of CA certificates to trust for the s3:// pools that name none (e.g. a private CA). "
    "By default the system's CAs are trusted.",
)
@click.option("--create-buckets", is_flag=True, help="Create S3 buckets that do not exist yet (else mkfs refuses).")
@click.option(
    "--replicas",
    type=int,
    default=None,
    help=f"Copies of each block, each on a different pool [default: {DEFAULT_REPLICAS}].",
)
@click.option(
    "--write-quorum", type=int, default=None, help="Copies that must be stored before a write succeeds [default: 1]."
)
@click.option(
    "--block-size",
    default=None,
    metavar="SIZE",
    help=f"Size of file blocks, a power of two from 64K to 64M [default: {DEFAULT_BLOCK_SIZE >> 20}M].",
)
@click.option("--force", is_flag=True, help="Replace an existing filesystem here and wipe its pools (data is lost).")
@secret_options
def mkfs(
    fs_dir: Path,
    pools: tuple[str, ...],
    config_file: Path | None,
    credentials_file: Path | None,
    ca_bundle: Path | None,
    create_buckets: bool,
    replicas: int | None,
    write_quorum: int | None,
    block_size: str | None,
    force: bool,
    passphrase_fd: int | None,
    key_file: Path | None,
) -> None:
    """Create a new filesystem whose configuration and metadata live in FS_DIR.

    S3 credentials never go on the command line: give --credentials-file, put them in the
    --pools-file, or set them in the environment."""
    from repfs.admin.auth import resolve_group
    from repfs.backend.credentials import from_environment
    from repfs.config import read_config_file
    from repfs.volume import mkfs as do_mkfs

    try:
        if config_file is not None:
            if pools:
                raise ConfigError("give pools either with --pool or in --pools-file, not both")
            try:
                base = read_config_file(config_file)
            except FileNotFoundError:
                raise ConfigError(f"no such file: {config_file}") from None
        else:
            if not pools:
                raise ConfigError("no pools: give at least one --pool file:///path or --pool s3://host/bucket")
            base = FsConfig(
                pools=tuple(pool_from_url(u, i) for i, u in enumerate(pools)),
                replicas=min(DEFAULT_REPLICAS, len(pools)),
            )
        specs = _s3_defaults(base.pools, credentials_file, ca_bundle)
        config = FsConfig(
            pools=specs,
            replicas=replicas if replicas is not None else base.replicas,
            write_quorum=write_quorum if write_quorum is not None else base.write_quorum,
            block_size=parse_size(block_size) if block_size else base.block_size,
        )
        secret = get_secret(passphrase_fd, key_file, confirm=True)
        sb = trio.run(
            lambda: do_mkfs(
                fs_dir.absolute(),
                config,
                secret,
                uid=os.getuid(),
                gid=resolve_group(None) or os.getgid(),  # the top level is the administrators'
                force=force,
                create_buckets=create_buckets,
            )
        )
        from_env = [p.name for p in config.pools if p.kind == "s3" and p.secret_key is None and not p.credentials_file]
        env = from_environment(os.environ) if from_env else None
    except RepfsError as exc:
        fail(exc)
    click.echo(
        f"created repfs filesystem {sb.fs_uuid} in {fs_dir} "
        f"({len(config.pools)} pools, {config.replicas} replicas, {config.block_size >> 10} KiB blocks)"
    )
    if from_env and env is not None:
        click.echo(
            f"note: pool(s) {', '.join(from_env)} take their S3 credentials from the {env.source}; "
            f"'repfs mount' needs the same variables, or add credentials_file to {fs_dir / 'repfs.toml'}"
        )


def _s3_defaults(
    specs: tuple[PoolSpec, ...], credentials_file: Path | None, ca_bundle: Path | None
) -> tuple[PoolSpec, ...]:
    """Apply mkfs's --credentials-file and --ca-bundle to the S3 pools that name none."""
    s3 = [p for p in specs if p.kind == "s3"]
    if credentials_file is not None and not s3:
        raise ConfigError("--credentials-file applies to S3 pools, and none is given")
    if ca_bundle is not None and not any(p.s3.secure for p in s3):
        raise ConfigError("--ca-bundle applies to s3:// (HTTPS) pools, and none is given")
    out = []
    for p in specs:
        if p.kind == "s3":
            if credentials_file is not None and p.secret_key is None and p.credentials_file is None:
                p = replace(p, credentials_file=str(credentials_file.absolute()))
            if ca_bundle is not None and p.s3.secure and p.ca_bundle is None:
                p = replace(p, ca_bundle=str(ca_bundle.absolute()))
        out.append(p)
    return tuple(out)


PACK_MAX_LIMIT = 1 << 20  # docs/FORMAT.md: blocks whose object is at most 1 MiB are packed


def _pack_max(text: str) -> int:
    size = parse_size(text)
    if size > PACK_MAX_LIMIT:
        raise click.BadParameter(f"{text!r} is more than 1M", param_hint="--pack-max")
    return size


READ_AHEAD_LIMIT = 256 << 20


def _read_ahead(text: str) -> int:
    size = parse_size(text)
    if size > READ_AHEAD_LIMIT:
        raise click.BadParameter(f"{text!r} is more than 256M", param_hint="--read-ahead")
    if 0 < size < 4096:
        raise click.BadParameter(f"{text!r} is less than 4K (0: the kernel's default)", param_hint="--read-ahead")
    return size


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground and log to standard error.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where blocks are cached and writes are staged [default: FS_DIR/cache].",
)
@click.option(
    "--cache-size",
    default="2G",
    show_default=True,
    metavar="SIZE",
    help="Most bytes the block cache may hold on local disk (its spare files, zeroed for new blocks, come on "
    "top: at most an eighth of it or 64 MiB).",
)
@click.option(
    "--max-dirty",
    default="512M",
    show_default=True,
    metavar="SIZE",
    help="Most written-but-not-yet-stored bytes; writers wait beyond this.",
)
@click.option(
    "-o",
    "fuse_options",
    multiple=True,
    metavar="OPT[,OPT]",
    help="Mount options: allow_other, allow_root, auto_unmount, ro, noexec, nosuid, nodev, noatime, ... "
    "(see docs/OPERATIONS.md).",
)
@click.option(
    "--allow-non-empty",
    is_flag=True,
    help="Mount over a directory that is not empty (its files are hidden while mounted).",
)
@click.option(
    "--log",
    "log_file",
    metavar="PATH|syslog",
    help="Log file, or `syslog` for the local syslog [default: standard error in the foreground, "
    "FS_DIR/repfs.log in the background].",
)
@click.option(
    "--audit",
    is_flag=True,
    help="One JSON audit record per file access and account change: account, path, result (logger repfs.audit).",
)
@click.option(
    "--admin-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the admin API listens (a Unix socket, mode 0660) [default: FS_DIR/admin.sock].",
)
@click.option(
    "--user-socket",
    metavar="PATH|off",
    help="Where accounts ask about themselves (a Unix socket, mode 0666; each request is "
    "authorized by the caller's uid) [default: /run/repfs/ID/user.sock].",
)
@click.option(
    "--admin-group",
    metavar="GROUP",
    help="Group (name or gid) whose members may use the admin socket, besides root "
    "[default: repfs-admin if that group exists, else none].",
)
@click.option("--no-admin", is_flag=True, help="Serve no admin socket.")
@click.option(
    "--metrics",
    metavar="ADDR:PORT",
    help="Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9108) [default: off].",
)
@click.option(
    "--metrics-web-config",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="TLS and basic auth for --metrics: a YAML (or .toml) file shaped like a Prometheus exporter's "
    "web config (tls_server_config, basic_auth_users with bcrypt or argon2 hashes); see docs/METRICS.md.",
)
@click.option(
    "--usage-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1, 86400),
    metavar="SECONDS",
    help="How often the space each pool uses is measured (for thresholds; can be costly on large S3 pools).",
)
@click.option(
    "--history-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1, 86400),
    metavar="SECONDS",
    help="How often each pool's usage and state is kept in FS_DIR/history.sqlite (state changes: at once).",
)
@click.option("--heartbeat", default=10.0, show_default=True, metavar="SECONDS", help="How often each pool is checked.")
@click.option(
    "--down-after",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    metavar="N",
    help="Missed heartbeats in a row after which a pool is taken out of use.",
)
@click.option(
    "--challenge-size",
    default="32",
    show_default=True,
    metavar="N|all",
    help="Blocks checked by digest when a pool that was down answers again, before it is used.",
)
@click.option(
    "--repair-rate",
    default="64M",
    show_default=True,
    metavar="SIZE",
    help="Most bytes a second the background repair writes to pools that come back; 0: no limit.",
)
@click.option(
    "--pack-max",
    default="1M",
    show_default=True,
    metavar="SIZE",
    help="Blocks whose object is at most SIZE (1M at most) travel in the journal's segments (packs: one "
    "object per fsync'd small file on each of two pools; docs/FORMAT.md); 0: every block is its own object "
    "(what was packed still reads).",
)
@click.option(
    "--read-ahead",
    default="4M",
    show_default=True,
    metavar="SIZE",
    help="How far the kernel reads ahead of a sequential reader of the mount (its read_ahead_kb; "
    "only root may set it); 0: the kernel's default (128K).",
)
@click.option(
    "--hash-rate",
    default="16M",
    show_default=True,
    metavar="SIZE",
    help="Most bytes a second the background content hasher reads (files changed other than in order); 0: no limit.",
)
@click.option(
    "--retention-interval",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(1, 7 * 86400),
    metavar="SECONDS",
    help="How often the retention sweeper deletes files past their maximum age (repfs-admin retention).",
)
@click.option(
    "--expire-rate",
    default=100.0,
    show_default=True,
    type=click.FloatRange(0),
    metavar="FILES",
    help="Most files a second that retention and eviction remove; 0: no limit.",
)
@click.option("--take-over", is_flag=True, help="Take over the expired mount lease of another host (it crashed).")
@click.option(
    "--break-lease",
    is_flag=True,
    help="Take the mount lease even if another host's is still valid: only when that host is known to be dead.",
)
@click.option("--debug", is_flag=True, help="Log debug messages.")
@click.option("--ready-fd", type=int, hidden=True)
@click.option("--secret-fd", type=int, hidden=True)
@secret_options
def mount(
    fs_dir: Path,
    mountpoint: Path,
    foreground: bool,
    cache_dir: Path | None,
    cache_size: str,
    max_dirty: str,
    fuse_options: tuple[str, ...],
    allow_non_empty: bool,
    log_file: str | None,
    audit: bool,
    admin_socket: Path | None,
    user_socket: str | None,
    admin_group: str | None,
    no_admin: bool,
    metrics: str | None,
    metrics_web_config: Path | None,
    usage_interval: float,
    history_interval: float,
    heartbeat: float,
    down_after: int,
    challenge_size: str,
    repair_rate: str,
    hash_rate: str,
    pack_max: str,
    read_ahead: str,
    retention_interval: float,
    expire_rate: float,
    take_over: bool,
    break_lease: bool,
    debug: bool,
    ready_fd: int | None,
    secret_fd: int | None,
    passphrase_fd: int | None,
    key_file: Path | None,
) -> None:
    """Mount the filesystem of FS_DIR on MOUNTPOINT (in the background unless --foreground).

    The daemon serves the admin API on a Unix socket (see `repfs-admin`) and, with
    --metrics, Prometheus metrics. Under systemd (Type=notify) it reports readiness.
    """
    from repfs import logs, mountopts
    from repfs.admin.service import AdminOptions, parse_address
    from repfs.admin.webconfig import load_web_config
    from repfs.mount import MountOptions, serve
    from repfs.stack import StackOptions

    fs_dir, mountpoint = fs_dir.absolute(), mountpoint.absolute()
    try:
        if "," in str(fs_dir):
            raise ConfigError("the filesystem directory's path must not contain a comma")
        if metrics_web_config is not None and not metrics:
            raise ConfigError("--metrics-web-config needs --metrics ADDR:PORT")
        metrics_web_config = metrics_web_config.absolute() if metrics_web_config else None
        options = mountopts.fuse_options(fuse_options)
        opts = MountOptions(
            fs_dir=fs_dir,
            mountpoint=mountpoint,
            stack=StackOptions(
                cache_dir=cache_dir.absolute() if cache_dir else None,
                cache_size=parse_size(cache_size),
                max_dirty=parse_size(max_dirty),
                heartbeat=heartbeat,
                down_after=down_after,
                challenge_size=parse_count(challenge_size, "--challenge-size"),
                repair_rate=parse_size(repair_rate) or None,
                hash_rate=parse_size(hash_rate) or None,
                pack_max=_pack_max(pack_max),
                take_over=take_over,
                break_lease=break_lease,
                usage_interval=usage_interval,
                history_interval=history_interval,
                audit=audit,
                retention_interval=retention_interval,
                expire_rate=expire_rate or None,
            ),
            fuse_options=options,
            allow_non_empty=allow_non_empty,
            read_ahead=_read_ahead(read_ahead),
            admin=AdminOptions(
                socket=admin_socket.absolute() if admin_socket else None,
                group=admin_group,
                metrics=parse_address(metrics) if metrics else None,
                metrics_web=load_web_config(metrics_web_config) if metrics_web_config else None,
                enabled=not no_admin,
                user_socket=Path(user_socket).absolute() if user_socket and user_socket != "off" else None,
                user_socket_enabled=user_socket != "off",
            ),
        )
        if secret_fd is not None:  # from the parent of a background mount: exact bytes
            secret = read_fd(secret_fd, strip=False)
        else:
            secret = get_secret(passphrase_fd, key_file, confirm=False)
        if not foreground:
            extra = [f"--cache-size={cache_size}", f"--max-dirty={max_dirty}", f"--heartbeat={heartbeat}"]
            extra += [f"--challenge-size={challenge_size}", f"--repair-rate={repair_rate}"]
            extra += [f"--down-after={down_after}", f"--retention-interval={retention_interval}"]
            extra += [f"--expire-rate={expire_rate}", f"--hash-rate={hash_rate}", f"--pack-max={pack_max}"]
            extra += [f"--read-ahead={read_ahead}"]
            extra += (["--take-over"] if take_over else []) + (["--break-lease"] if break_lease else [])
            extra += [f"--cache-dir={opts.stack.cache_dir}"] if opts.stack.cache_dir else []
            extra += [f"-o{o}" for o in sorted(options)] + (["--debug"] if debug else [])
            extra += [f"--usage-interval={usage_interval}", f"--history-interval={history_interval}"]
            extra += ["--audit"] if audit else []
            extra += [f"--admin-socket={opts.admin.socket}"] if opts.admin.socket else []
            extra += [f"--admin-group={admin_group}"] if admin_group else []
            if user_socket:
                extra += [f"--user-socket={opts.admin.user_socket or 'off'}"]
            extra += ["--no-admin"] if no_admin else []
            extra += ["--allow-non-empty"] if allow_non_empty else []
            extra += [f"--metrics={metrics}"] if metrics else []
            extra += [f"--metrics-web-config={metrics_web_config}"] if metrics_web_config else []
            _mount_in_background(fs_dir, mountpoint, secret, log_file, extra)
            return
        logs.setup(log_file, debug=debug, audit=audit)

        def ready(notes: list[str]) -> None:
            if ready_fd is None:
                for note in notes:
                    click.echo(f"repfs: warning: {note}", err=True)
                return
            with contextlib.suppress(OSError):  # whoever waits may have given up: the daemon goes on
                os.write(ready_fd, "".join(f"{line}\n" for line in ["ok", *notes]).encode())
            os.close(ready_fd)

        trio.run(serve, opts, secret, ready)
    except RepfsError as exc:
        if ready_fd is None:
            fail(exc)  # one line on the terminal (or the journal, under systemd)
        # A daemon started for someone who waits on the ready pipe: they print the message;
        # it goes to the log once.
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"{exc}\n".encode())
        logging.getLogger("repfs").error("%s", exc)
        sys.exit(exit_code(exc))


def _mount_in_background(fs_dir: Path, mountpoint: Path, secret: bytes, log_file: str | None, extra: list[str]) -> None:
    """Start the daemon detached; report when it has mounted (or why it could not)."""
    from repfs.volume import FsPaths

    log_path = Path(log_file) if log_file and log_file != "syslog" else FsPaths(fs_dir).log
    ready_r, ready_w = os.pipe()
    secret_r, secret_w = os.pipe()
    cmd = [
        sys.executable,
        "-m",
        "repfs.cli",
        "mount",
        "--foreground",
        "--log",
        log_file if log_file == "syslog" else str(log_path),
        "--ready-fd",
        str(ready_w),
        "--secret-fd",
        str(secret_r),
        *extra,
        str(fs_dir),
        str(mountpoint),
    ]
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            cmd,
            pass_fds=(ready_w, secret_r),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )
    os.close(ready_w)
    os.close(secret_r)
    os.write(secret_w, secret)
    os.close(secret_w)
    answer = read_fd(ready_r).decode(errors="replace").strip()
    first, *notes = answer.splitlines() or [""]
    if first == "ok":
        for note in notes:
            click.echo(f"repfs: warning: {note}", err=True)
        click.echo(f"mounted {fs_dir} on {mountpoint} (daemon pid {proc.pid}, log {log_path})")
        return
    code = proc.wait()
    click.echo(f"repfs: error: {answer or 'the daemon stopped before mounting; see ' + str(log_path)}", err=True)
    sys.exit(code or 1)


@main.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--timeout",
    default=600.0,
    show_default=True,
    help="Seconds to wait for the daemon to store its dirty blocks and exit.",
)
def umount(mountpoint: Path, timeout: float) -> None:
    """Unmount MOUNTPOINT and wait until the daemon has stored everything and exited."""
    from repfs.mountinfo import fs_dir_of

    fs_dir = fs_dir_of(mountpoint)
    if fs_dir is None:
        click.echo(f"repfs: error: {mountpoint} is not a mounted repfs filesystem", err=True)
        sys.exit(2)
    res = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if res.returncode != 0:
        click.echo(f"repfs: error: cannot unmount {mountpoint}: {res.stderr.strip()}", err=True)
        sys.exit(1)
    from repfs.volume import FsPaths

    lock = FsPaths(fs_dir).lock
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:  # the daemon holds the lock until it has flushed and exited
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    click.echo(
                        f"repfs: error: the daemon of {fs_dir} is still storing data after {timeout}s; "
                        f"see {FsPaths(fs_dir).log}",
                        err=True,
                    )
                    sys.exit(1)
                time.sleep(0.1)
    finally:
        os.close(fd)
    from repfs.fslock import read_report

    status, note = read_report(FsPaths(fs_dir))
    if status != "clean":
        why = f"the daemon {status}" if status else "the daemon stopped without a clean unmount"
        also = f"; {note}" if note else ""
        click.echo(
            f"repfs: error: unmounted {mountpoint}, but {why}; the next mount stores what is left{also} "
            f"(see {FsPaths(fs_dir).log})",
            err=True,
        )
        sys.exit(1)
    click.echo(f"unmounted {mountpoint}" + (f"; {note}" if note else ""))


for command in (passwd, scrub, recover, fsck):
    main.add_command(command)




@main.command()
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bind", default="127.0.0.1:8443", show_default=True, metavar="ADDR:PORT", help="Where to listen.")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), help="TLS certificate (PEM); with --key.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Its private key (PEM).")
@click.option("--insecure-http", is_flag=True, help="Plain HTTP, no TLS: for debugging only (warned in the log).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Sessions and the made certificate [default: FS_DIR/web].")  # fmt: skip
@click.option("--max-put", default="1G", show_default=True, metavar="SIZE", help="Largest simple PUT upload.")
@click.option("--max-upload", default="100G", show_default=True, metavar="SIZE", help="Largest resumable upload.")
@click.option("--upload-expiry", default=24 * 3600.0, show_default=True, type=click.FloatRange(1), metavar="SECONDS",
              help="How long an unfinished resumable upload is kept after its last bytes.")  # fmt: skip
@click.option("--token-ttl", default=8 * 3600.0, show_default=True, type=click.FloatRange(60), metavar="SECONDS",
              help="How long a sign-in lasts.")  # fmt: skip
@click.option("--log", "log_file", metavar="PATH|syslog", help="Log to a file or syslog [default: standard error].")
@click.option("--debug", is_flag=True, help="Log debug messages.")
@click.option("--admin-socket", type=click.Path(dir_okay=False, path_type=Path),
              help="The mount's admin socket, for administrators' routes [default: FS_DIR/admin.sock].")  # fmt: skip
@click.option("--admin-group", metavar="GROUP", help="Its members' accounts are administrators [default: repfs-admin].")
@click.option("--metrics", metavar="ADDR:PORT", help="Serve Prometheus metrics of the web process there (plain HTTP).")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="A web origin (https://host[:port]) whose pages may call the API; again for more.")  # fmt: skip
@click.option("--rate", default=100.0, show_default=True, type=click.FloatRange(0), metavar="N",
              help="Requests a second per token or API key on average (429 past it; 0: no limit).")  # fmt: skip
@click.option("--burst", default=200, show_default=True, type=click.IntRange(1), metavar="N",
              help="Requests at once per token above the average.")  # fmt: skip
@click.option("--ready-fd", type=int, hidden=True)
def web(
    target: Path,
    bind: str,
    cert: Path | None,
    key: Path | None,
    insecure_http: bool,
    state_dir: Path | None,
    max_put: str,
    max_upload: str,
    upload_expiry: float,
    token_ttl: float,
    log_file: str | None,
    debug: bool,
    admin_socket: Path | None,
    admin_group: str | None,
    metrics: str | None,
    cors_origins: tuple[str, ...],
    rate: float,
    burst: int,
    ready_fd: int | None,
) -> None:
    """Serve the REST/JSON API over HTTPS for the filesystem mounted at TARGET (the mount
    point, or its FS_DIR), as root: every request's files are read and written on the mount
    as the signed-in account. See docs/API.md."""
    from repfs import logs
    from repfs.web.app import WebOptions
    from repfs.web.server import ServeOptions, serve

    logs.setup(log_file, debug=debug)
    if os.geteuid() != 0:
        fail(SetupError("repfs web runs as root: it reads and writes files as each signed-in account"))
    web_opts = WebOptions(max_put=parse_size(max_put), max_upload=parse_size(max_upload),
                          cors_origins=cors_origins, rate=rate, burst=burst)  # fmt: skip
    opts = ServeOptions(target=target, bind=bind, cert=cert, key=key, insecure_http=insecure_http,
                        state=state_dir, token_ttl=token_ttl, upload_expiry=upload_expiry, web=web_opts,
                        admin_socket=admin_socket, admin_group=admin_group, metrics=metrics)  # fmt: skip

    def ready(where: str) -> None:
        click.echo(f"serving {where}/api/v1", err=True)
        if ready_fd is not None:
            os.write(ready_fd, f"ok {where}\n".encode())
            os.close(ready_fd)

    try:
        trio.run(partial(serve, opts, ready=ready))
    except RepfsError as exc:
        fail(exc)


if __name__ == "__main__":
    main()
