"""`repfs passwd`, `scrub`, `recover` and `fsck`: work on a filesystem that is not mounted."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
from pathlib import Path

import click
import trio

from repfs import logs
from repfs.cli_common import (
    DEFAULT_SCRUB_RATE,
    fail,
    get_secret,
    json_option,
    log_option,
    new_secret_options,
    parse_size,
    secret_options,
)
from repfs.errors import RepfsError
from repfs.progress import Progress


@click.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@new_secret_options
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


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


@click.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option(
    "--rate",
    default=DEFAULT_SCRUB_RATE,
    show_default=True,
    metavar="SIZE",
    help="Read at most this many bytes a second from the pools (and write as much for repairs); 0: no limit.",
)
@click.option("--restart", is_flag=True, help="Start from the first block, not where an interrupted scrub stopped.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="As for mount.")
@log_option
@json_option
def scrub(
    fs_dir: Path,
    passphrase_fd: int | None,
    key_file: Path | None,
    rate: str,
    restart: bool,
    cache_dir: Path | None,
    log_file: str | None,
    as_json: bool,
) -> None:
    """Read and verify every copy of every block of FS_DIR, and repair what is bad or missing.

    The filesystem must not be mounted. An interrupted scrub resumes where it stopped.
    Exit status: 0 when every block has all its copies, 1 when some could not be
    completed (a pool is down), 6 when some block has no good copy left.
    """
    from repfs.control.scrub import record_finished
    from repfs.fs.ratelimit import RateLimit
    from repfs.fs.scrub import ScrubReport
    from repfs.fs.scrub import scrub as run_scrub
    from repfs.mount import MountOptions, run_unmounted
    from repfs.stack import Layers, StackOptions

    try:
        logs.setup(log_file, level=logging.WARNING if log_file is None else logging.INFO)
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        limit = parse_size(rate) or None
        fs_dir = fs_dir.absolute()
        opts = MountOptions(
            fs_dir=fs_dir,
            mountpoint=fs_dir,
            stack=StackOptions(cache_dir=cache_dir.absolute() if cache_dir else None, repair_rate=limit),
        )
        with Progress("scrub", "blocks") as bar:

            async def work(layers: Layers) -> ScrubReport:
                report = await run_scrub(
                    layers.meta, layers.repairer, restart=restart, reads=RateLimit(limit), progress=bar.update
                )
                record_finished(layers.meta)
                return report

            report = trio.run(run_unmounted, opts, secret, work)
    except RepfsError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(report), "summary": report.summary()}))
    else:
        click.echo(("resumed: " if report.resumed else "") + report.summary())
    if report.unrecoverable:
        sys.exit(6)
    if report.incomplete:
        sys.exit(1)


@click.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option("--force", is_flag=True, help="Replace metadata that is already in FS_DIR.")
@click.option(
    "--create-system-users", is_flag=True, help="Make the accounts' users on this host (their old uids) if missing."
)
@log_option
@json_option
def recover(
    fs_dir: Path,
    passphrase_fd: int | None,
    key_file: Path | None,
    force: bool,
    create_system_users: bool,
    log_file: str | None,
    as_json: bool,
) -> None:
    """Rebuild the metadata of FS_DIR from its pools (on a new host, or after losing it).

    FS_DIR needs only its repfs.toml (the pool configuration). The newest metadata
    snapshot that reads is taken, then every journal segment after it is applied.
    """
    from repfs.recovery import recover as run_recover

    try:
        logs.setup(log_file, level=logging.WARNING if log_file is None else logging.INFO)
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        with Progress("recover", "segments") as bar:
            out = trio.run(
                lambda: run_recover(
                    fs_dir.absolute(), secret, force=force, create_system_users=create_system_users, progress=bar.update
                )
            )
    except RepfsError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(out), "fs_dir": str(fs_dir)}))
    else:
        journal = (
            f"and {out.change_sets} change sets from {out.segments} journal segments, "
            f"the last written {_when(out.written_ns)}"
            if out.written_ns
            else "with no journal segment after it"
        )
        click.echo(f"recovered {fs_dir} up to change {out.last_seq}: snapshot {out.snapshot_seq} {journal}")
        for what in out.damaged:
            click.echo(f"repfs: warning: damaged on every pool, skipped: {what}", err=True)
        if out.gap_after is not None:
            click.echo(
                f"repfs: warning: the journal has a gap after change {out.gap_after}; later changes are lost",
                err=True,
            )
    if out.gap_after is not None:
        sys.exit(1)


@click.command()
@click.argument("fs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@secret_options
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data, then check again.")
@log_option
@json_option
def fsck(
    fs_dir: Path, passphrase_fd: int | None, key_file: Path | None, repair: bool, log_file: str | None, as_json: bool
) -> None:
    """Check the metadata of FS_DIR against itself and against its pools (unmounted).

    Exit status: 0 nothing wrong (or everything repaired), 1 problems found (or left
    after --repair).
    """
    from repfs.fsck import FsckReport
    from repfs.fsck import fsck as run_fsck
    from repfs.mount import MountOptions, run_unmounted
    from repfs.stack import Layers

    try:
        logs.setup(log_file, level=logging.WARNING if log_file is None else logging.INFO)
        secret = get_secret(passphrase_fd, key_file, confirm=False)
        fs_dir = fs_dir.absolute()
        opts = MountOptions(fs_dir=fs_dir, mountpoint=fs_dir)

        def progress(phase: str, done: int, total: int) -> None:
            if done == 0 and not as_json:
                click.echo(f"checking {phase} ...", err=True)

        async def work(layers: Layers) -> tuple[FsckReport, FsckReport | None]:
            first = await run_fsck(layers, repair=repair, progress=progress)
            again = await run_fsck(layers, progress=progress) if first.repaired else None
            return first, again

        first, again = trio.run(lambda: run_unmounted(opts, secret, work, upkeep=False))
    except RepfsError as exc:
        fail(exc, as_json=as_json)
    left = again.problems if again is not None else first.problems
    if as_json:
        click.echo(
            json.dumps(
                {
                    "problems": first.problems,
                    "found": dataclasses.asdict(first),
                    "left": left,
                    "after_repair": dataclasses.asdict(again) if again is not None else None,
                }
            )
        )
        sys.exit(1 if left else 0)
    for line in first.lines():
        click.echo(line)
    if again is not None:
        click.echo(f"repaired; checked again: {again.problems} problems left")
        for line in again.lines() if again.problems else []:
            click.echo(line)
        sys.exit(1 if again.problems else 0)
    click.echo(f"{first.problems} problems found" + (" (run with --repair to fix them)" if first.problems else ""))
    sys.exit(1 if first.problems else 0)
