"""What every `repfs` command shares: sizes, exit codes, logging, and the secret."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from repfs.config import parse_size as config_size
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

def parse_size(text: str) -> int:
    """The one size syntax of every option and config key (see config.parse_size)."""
    try:
        return config_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_count(text: str, option: str) -> int | None:
    """A positive count, or None for `all`."""
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise click.BadParameter(f"{text!r} is not a positive number or 'all'", param_hint=option)
    return int(text)


# How fast a scrub reads, mounted (repfs-admin scrub) or not (repfs scrub): one default.
DEFAULT_SCRUB_RATE = "64M"


def exit_code(exc: RepfsError) -> int:
    return next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)


def fail(exc: RepfsError, *, as_json: bool = False) -> NoReturn:
    """One line naming what is wrong (as JSON with --json, on standard output), then exit."""
    code = exit_code(exc)
    if as_json:
        click.echo(json.dumps({"error": type(exc).__name__, "message": str(exc), "exit": code}))
    else:
        click.echo(f"repfs: error: {exc}", err=True)
    sys.exit(code)


def log_option(fn: F) -> F:
    return click.option(
        "--log",
        "log_file",
        metavar="PATH|syslog",
        help="Log to this file, or `syslog` for the local syslog [default: warnings to standard error].",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")(fn)


# --- secrets -----------------------------------------------------------------------


def read_fd(fd: int, *, strip: bool = True) -> bytes:
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
            secret = read_fd(passphrase_fd)
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


def new_secret_options(fn: F) -> F:
    """Where a new secret comes from (passwd): a descriptor, a key file, or a prompt (twice)."""
    fn = click.option(
        "--new-key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Use the contents of this file (mode 0600) as the new secret.",
    )(fn)
    fn = click.option("--new-passphrase-fd", type=int, help="Read the new passphrase from this file descriptor.")(fn)
    return fn


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
