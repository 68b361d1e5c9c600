"""`repfs`: create, mount, unmount a filesystem and change its passphrase.

Exit codes: 0 success, 1 a runtime failure (pools, I/O), 2 bad usage or configuration,
3 wrong passphrase or key file, 4 a pool that is not part of this filesystem,
5 a filesystem already exists.
"""

from __future__ import annotations

import datetime
import fcntl
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

from repfs import __version__
from repfs.config import DEFAULT_BLOCK_SIZE, DEFAULT_REPLICAS, FsConfig, PoolSpec, pool_from_url
from repfs.errors import (
    ConfigError,
    FilesystemExists,
    ForeignPool,
    RepfsError,
    SetupError,
    WrongPassphrase,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES: list[tuple[type[RepfsError], int]] = [
    (WrongPassphrase, 3),
    (ForeignPool, 4),
    (FilesystemExists, 5),
    (ConfigError, 2),
    (SetupError, 2),
]

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.I)


def parse_size(text: str) -> int:
    m = _SIZE_RE.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a size; write e.g. 4M, 512K or 2G")
    exponent = "_kmgt".index((m.group(2) or "_").lower())
    return int(m.group(1)) * (1 << (10 * exponent))


def parse_count(text: str, option: str) -> int | None:
    """A positive count, or None for `all`."""
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise click.BadParameter(f"{text!r} is not a positive number or 'all'", param_hint=option)
    return int(text)


def fail(exc: RepfsError) -> None:
    code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)
    click.echo(f"repfs: error: {exc}", err=True)
    sys.exit(code)


def setup_logging(log_file: str | None, debug: bool) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("pyfuse3").setLevel(logging.INFO)


# --- secrets -----------------------------------------------------------------------


def _read_fd(fd: int, *, strip: bool = True) -> bytes:
    """Everything up to end of file; a typed passphrase loses its trailing newline."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    data = b"".join(chunks)
    return data.rstrip(b"\r\n") if strip else data


def read_key_file(path: Path) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read key file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise SetupError(f"key file {path} is readable by other users; run: chmod 600 {path}")
    if len(data) < 16:
        raise SetupError(f"key file {path} is too short: use at least 16 random bytes")
    return data


def get_secret(passphrase_fd: int | None, key_file: Path | None, *, confirm: bool, what: str = "Passphrase") -> bytes:
    if passphrase_fd is not None and key_file is not None:
        raise ConfigError("give either --passphrase-fd or --key-file, not both")
    if key_file is not None:
        return read_key_file(key_file)
    if passphrase_fd is not None:
        try:
            secret = _read_fd(passphrase_fd)
        except OSError as exc:
            raise SetupError(
                f"cannot read the passphrase from file descriptor {passphrase_fd}: {exc.strerror}"
            ) from None
    else:
        if not sys.stdin.isatty():
            raise SetupError("no passphrase: standard input is not a terminal; use --passphrase-fd or --key-file")
        secret = click.prompt(what, hide_input=True, confirmation_prompt=confirm).encode()
    if not secret:
        raise SetupError("the passphrase is empty")
    return secret


def secret_options(fn: F) -> F:
    fn = click.option(
        "--key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Read the secret from this file (mode 0600) instead of asking for a passphrase.",
    )(fn)
    fn = click.option(
        "--passphrase-fd",
        type=int,
        help="Read the passphrase from this open file descriptor (for scripts), up to end of file.",
    )(fn)
    return fn


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
                gid=os.getgid(),
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
    help="Most bytes the block cache may hold on local disk.",
)
@click.option(
    "--max-dirty",
    default="512M",
    show_default=True,
    metavar="SIZE",
    help="Most written-but-not-yet-stored bytes; writers wait beyond this.",
)
@click.option("-o", "fuse_options", multiple=True, metavar="OPT[,OPT]", help="FUSE mount options, e.g. -o allow_other.")
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
    help="Log every file open, create, delete and rename with the caller's uid (logger repfs.audit).",
)
@click.option(
    "--admin-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the admin API listens (a Unix socket, mode 0660) [default: FS_DIR/admin.sock].",
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
    "--usage-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1, 86400),
    metavar="SECONDS",
    help="How often the space each pool uses is measured (for thresholds; can be costly on large S3 pools).",
)
@click.option("--heartbeat", default=10.0, show_default=True, metavar="SECONDS",
              help="How often each pool is checked.")
@click.option("--down-after", default=3, show_default=True, type=click.IntRange(1, 100), metavar="N",
              help="Missed heartbeats in a row after which a pool is taken out of use.")
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
    log_file: str | None,
    audit: bool,
    admin_socket: Path | None,
    admin_group: str | None,
    no_admin: bool,
    metrics: str | None,
    usage_interval: float,
    heartbeat: float,
    down_after: int,
    challenge_size: str,
    repair_rate: str,
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
    from repfs.admin import logs
    from repfs.admin.service import AdminOptions, parse_address
    from repfs.mount import MountOptions, serve

    fs_dir, mountpoint = fs_dir.absolute(), mountpoint.absolute()
    try:
        if "," in str(fs_dir):
            raise ConfigError("the filesystem directory's path must not contain a comma")
        options = frozenset(o.strip() for opt in fuse_options for o in opt.split(",") if o.strip())
        opts = MountOptions(
            fs_dir=fs_dir,
            mountpoint=mountpoint,
            cache_dir=cache_dir.absolute() if cache_dir else None,
            cache_size=parse_size(cache_size),
            max_dirty=parse_size(max_dirty),
            fuse_options=options,
            heartbeat=heartbeat,
            down_after=down_after,
            challenge_size=parse_count(challenge_size, "--challenge-size"),
            repair_rate=parse_size(repair_rate) or None,
            take_over=take_over,
            break_lease=break_lease,
            usage_interval=usage_interval,
            audit=audit,
            admin=AdminOptions(
                socket=admin_socket.absolute() if admin_socket else None,
                group=admin_group,
                metrics=parse_address(metrics) if metrics else None,
                enabled=not no_admin,
            ),
        )
        if secret_fd is not None:  # from the parent of a background mount: exact bytes
            secret = _read_fd(secret_fd, strip=False)
        else:
            secret = get_secret(passphrase_fd, key_file, confirm=False)
        if not foreground:
            extra = [f"--cache-size={cache_size}", f"--max-dirty={max_dirty}", f"--heartbeat={heartbeat}"]
            extra += [f"--challenge-size={challenge_size}", f"--repair-rate={repair_rate}"]
            extra += [f"--down-after={down_after}"]
            extra += (["--take-over"] if take_over else []) + (["--break-lease"] if break_lease else [])
            extra += [f"--cache-dir={opts.cache_dir}"] if opts.cache_dir else []
            extra += [f"-o{o}" for o in sorted(options)] + (["--debug"] if debug else [])
            extra += [f"--usage-interval={usage_interval}"] + (["--audit"] if audit else [])
            extra += [f"--admin-socket={opts.admin.socket}"] if opts.admin.socket else []
            extra += [f"--admin-group={admin_group}"] if admin_group else []
            extra += ["--no-admin"] if no_admin else []
            extra += [f"--metrics={metrics}"] if metrics else []
            _mount_in_background(fs_dir, mountpoint, secret, log_file, extra)
            return
        logs.setup(log_file, debug=debug, audit=audit)

        def ready() -> None:
            if ready_fd is not None:
                os.write(ready_fd, b"ok\n")
                os.close(ready_fd)

        trio.run(serve, opts, secret, ready)
    except RepfsError as exc:
        if ready_fd is not None:
            try:
                os.write(ready_fd, f"{exc}\n".encode())
            except OSError:
                pass
        logging.getLogger("repfs").error("%s", exc)
        fail(exc)


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
    answer = _read_fd(ready_r).decode(errors="replace").strip()
    if answer == "ok":
        click.echo(f"mounted {fs_dir} on {mountpoint} (daemon pid {proc.pid}, log {log_path})")
        return
    code = proc.wait()
    click.echo(f"repfs: error: {answer or 'the daemon stopped before mounting; see ' + str(log_path)}", err=True)
    sys.exit(code or 1)


def _fs_dir_of(mountpoint: Path) -> Path | None:
    target = str(mountpoint.absolute())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == target and fields[sep + 2].startswith("repfs:"):
                return Path(fields[sep + 2][len("repfs:") :])
    return None


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
    fs_dir = _fs_dir_of(mountpoint)
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
    from repfs.mount import read_report

    status = read_report(FsPaths(fs_dir))
    if status != "clean":
        why = f"the daemon {status}" if status else "the daemon stopped without a clean unmount"
        click.echo(
            f"repfs: error: unmounted {mountpoint}, but {why}; the next mount stores what is left "
            f"(see {FsPaths(fs_dir).log})",
            err=True,
        )
        sys.exit(1)
    click.echo(f"unmounted {mountpoint}")


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option("--new-passphrase-fd", type=int, help="Read the new passphrase from this file descriptor.")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use the contents of this file (mode 0600) as the new secret.",
)
def passwd(
    fs_dir: Path,
    passphrase_fd: int | None,
    key_file: Path | None,
    new_passphrase_fd: int | None,
    new_key_file: Path | None,
) -> None:
    """Change the passphrase (or key file) of FS_DIR. No data is rewritten: only the
    data key is wrapped anew, on every pool."""
    from repfs.volume import passwd as do_passwd

    try:
        old = get_secret(passphrase_fd, key_file, confirm=False, what="Current passphrase")
        new = get_secret(new_passphrase_fd, new_key_file, confirm=True, what="New passphrase")
        trio.run(do_passwd, fs_dir.absolute(), old, new)
    except RepfsError as exc:
        fail(exc)
    click.echo(f"passphrase of {fs_dir} changed")


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option(
    "--rate",
    default="64M",
    show_default=True,
    metavar="SIZE",
    help="Read at most this many bytes a second from the pools (and write as much for repairs); 0: no limit.",
)
@click.option("--restart", is_flag=True, help="Start from the first block, not where an interrupted scrub stopped.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="As for mount.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log here instead of standard error.")
def scrub(
    fs_dir: Path,
    passphrase_fd: int | None,
    key_file: Path | None,
    rate: str,
    restart: bool,
    cache_dir: Path | None,
    log_file: str | None,
) -> None:
    """Read and verify every copy of every block of FS_DIR, and repair what is bad or missing.

    The filesystem must not be mounted. An interrupted scrub resumes where it stopped.
    Exit status: 0 when every block has all its copies, 1 when some could not be
    completed (a pool is down), 6 when some block has no good copy left.
    """
    from repfs.fs.ratelimit import RateLimit
    from repfs.fs.scrub import ScrubReport
    from repfs.fs.scrub import scrub as run_scrub
    from repfs.mount import Layers, MountOptions, run_unmounted

    setup_logging(log_file, False)
    logging.getLogger().setLevel(logging.WARNING if log_file is None else logging.INFO)
    try:
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        limit = parse_size(rate) or None
        fs_dir = fs_dir.absolute()
        opts = MountOptions(
            fs_dir=fs_dir,
            mountpoint=fs_dir,
            cache_dir=cache_dir.absolute() if cache_dir else None,
            repair_rate=limit,
        )
        with click.progressbar(length=1, label="scrub", show_eta=True, show_pos=True) as bar:
            started = time.monotonic()
            first: list[int] = []

            def progress(done: int, total: int) -> None:
                if not first:
                    first.append(done)
                bar.length = max(total, 1)
                elapsed = time.monotonic() - started
                bar.label = f"scrub {(done - first[0]) / elapsed if elapsed > 0 else 0:7.1f} blocks/s"
                bar.update(done - bar.pos)

            async def work(layers: Layers) -> ScrubReport:
                return await run_scrub(
                    layers.meta, layers.repairer, restart=restart, reads=RateLimit(limit), progress=progress
                )

            report = trio.run(run_unmounted, opts, secret, work)
    except RepfsError as exc:
        fail(exc)
    click.echo(("resumed: " if report.resumed else "") + report.summary())
    if report.unrecoverable:
        sys.exit(6)
    if report.incomplete:
        sys.exit(1)


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option("--force", is_flag=True, help="Replace metadata that is already in FS_DIR.")
def recover(fs_dir: Path, passphrase_fd: int | None, key_file: Path | None, force: bool) -> None:
    """Rebuild the metadata of FS_DIR from its pools (on a new host, or after losing it).

    FS_DIR needs only its repfs.toml (the pool configuration). The newest metadata
    snapshot that reads is taken, then every journal segment after it is applied.
    """
    from repfs.recovery import recover as run_recover

    setup_logging(None, False)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        with click.progressbar(length=1, label="recover", show_eta=True, show_pos=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            out = trio.run(lambda: run_recover(fs_dir.absolute(), secret, force=force, progress=progress))
    except RepfsError as exc:
        fail(exc)
    when = (
        datetime.datetime.fromtimestamp(out.written_ns / 1e9).astimezone().isoformat(timespec="seconds")
        if out.written_ns
        else "the snapshot's time"
    )
    click.echo(
        f"recovered {fs_dir} up to change {out.last_seq} (written {when}): snapshot {out.snapshot_seq} "
        f"and {out.change_sets} change sets from {out.segments} journal segments"
    )
    for what in out.damaged:
        click.echo(f"repfs: warning: damaged on every pool, skipped: {what}", err=True)
    if out.gap_after is not None:
        click.echo(
            f"repfs: warning: the journal has a gap after change {out.gap_after}; later changes are lost",
            err=True,
        )
        sys.exit(1)


@main.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data, then check again.")
def fsck(fs_dir: Path, passphrase_fd: int | None, key_file: Path | None, repair: bool) -> None:
    """Check the metadata of FS_DIR against itself and against its pools (unmounted).

    Exit status: 0 nothing wrong (or everything repaired), 1 problems found (or left
    after --repair).
    """
    from repfs.fsck import FsckReport
    from repfs.fsck import fsck as run_fsck
    from repfs.mount import Layers, MountOptions, run_unmounted

    setup_logging(None, False)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        fs_dir = fs_dir.absolute()
        opts = MountOptions(fs_dir=fs_dir, mountpoint=fs_dir)

        def progress(phase: str, done: int, total: int) -> None:
            if done == 0:
                click.echo(f"checking {phase} ...", err=True)

        async def work(layers: Layers) -> tuple[FsckReport, FsckReport | None]:
            first = await run_fsck(layers, repair=repair, progress=progress)
            again = await run_fsck(layers, progress=progress) if first.repaired else None
            return first, again

        first, again = trio.run(lambda: run_unmounted(opts, secret, work, upkeep=False))
    except RepfsError as exc:
        fail(exc)
    for line in first.lines():
        click.echo(line)
    if again is not None:
        click.echo(f"repaired; checked again: {again.problems} problems left")
        for line in again.lines() if again.problems else []:
            click.echo(line)
        sys.exit(1 if again.problems else 0)
    click.echo(f"{first.problems} problems found" + (" (run with --repair to fix them)" if first.problems else ""))
    sys.exit(1 if first.problems else 0)


if __name__ == "__main__":
    main()
