"""`repfs`: create, mount, unmount a filesystem and change its passphrase.

Exit codes: 0 success, 1 a runtime failure (pools, I/O), 2 bad usage or configuration,
3 wrong passphrase or key file, 4 a pool that is not part of this filesystem,
5 a filesystem already exists.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

from repfs import __version__
from repfs.config import DEFAULT_BLOCK_SIZE, DEFAULT_REPLICAS, FsConfig, parse_config, pool_from_url
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
    help="A pool, e.g. file:///srv/pool1 (repeat for each pool). Names default to pool1, pool2, ...",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read pools and settings from this TOML file instead of --pool options.",
)
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
    replicas: int | None,
    write_quorum: int | None,
    block_size: str | None,
    force: bool,
    passphrase_fd: int | None,
    key_file: Path | None,
) -> None:
    """Create a new filesystem whose configuration and metadata live in FS_DIR."""
    from repfs.volume import mkfs as do_mkfs

    try:
        if config_file is not None:
            if pools:
                raise ConfigError("give pools either with --pool or in --config, not both")
            base = parse_config(config_file.read_text(), source=str(config_file))
        else:
            if not pools:
                raise ConfigError("no pools: give at least one --pool file:///path")
            base = FsConfig(
                pools=tuple(pool_from_url(u, i) for i, u in enumerate(pools)),
                replicas=min(DEFAULT_REPLICAS, len(pools)),
            )
        config = FsConfig(
            pools=base.pools,
            replicas=replicas if replicas is not None else base.replicas,
            write_quorum=write_quorum if write_quorum is not None else base.write_quorum,
            block_size=parse_size(block_size) if block_size else base.block_size,
        )
        secret = get_secret(passphrase_fd, key_file, confirm=True)
        sb = trio.run(lambda: do_mkfs(fs_dir.absolute(), config, secret, uid=os.getuid(), gid=os.getgid(), force=force))
    except RepfsError as exc:
        fail(exc)
    click.echo(
        f"created repfs filesystem {sb.fs_uuid} in {fs_dir} "
        f"({len(config.pools)} pools, {config.replicas} replicas, {config.block_size >> 10} KiB blocks)"
    )


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
    metavar="PATH",
    help="Log file [default: standard error in the foreground, FS_DIR/repfs.log in the background].",
)
@click.option("--heartbeat", default=10.0, show_default=True, metavar="SECONDS",
              help="How often each pool is checked (a pool missing 3 checks in a row is taken out of use).")
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
    heartbeat: float,
    debug: bool,
    ready_fd: int | None,
    secret_fd: int | None,
    passphrase_fd: int | None,
    key_file: Path | None,
) -> None:
    """Mount the filesystem of FS_DIR on MOUNTPOINT (in the background unless --foreground)."""
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
        )
        if secret_fd is not None:  # from the parent of a background mount: exact bytes
            secret = _read_fd(secret_fd, strip=False)
        else:
            secret = get_secret(passphrase_fd, key_file, confirm=False)
        if not foreground:
            extra = [f"--cache-size={cache_size}", f"--max-dirty={max_dirty}", f"--heartbeat={heartbeat}"]
            extra += [f"--cache-dir={opts.cache_dir}"] if opts.cache_dir else []
            extra += [f"-o{o}" for o in sorted(options)] + (["--debug"] if debug else [])
            _mount_in_background(fs_dir, mountpoint, secret, log_file, extra)
            return
        setup_logging(log_file, debug)

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

    log_path = Path(log_file) if log_file else FsPaths(fs_dir).log
    ready_r, ready_w = os.pipe()
    secret_r, secret_w = os.pipe()
    cmd = [
        sys.executable,
        "-m",
        "repfs.cli",
        "mount",
        "--foreground",
        "--log",
        str(log_path),
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


if __name__ == "__main__":
    main()
