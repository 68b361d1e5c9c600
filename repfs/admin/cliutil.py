"""What every `repfs-admin` command shares: the request to the daemon, exit codes, and
the tables and fields people read."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from repfs import mountinfo
from repfs.admin.client import AdminClient, AdminError, Unreachable, find_socket, find_user_socket
from repfs.progress import duration

F = TypeVar("F", bound=Callable[..., Any])

EXIT_STATUS = {400: 2, 403: 3, 404: 4, 405: 2, 409: 5, 413: 2, 503: 9}
EXIT_UNREACHABLE = 7
EXIT_TIMEOUT = 8
EXIT_UNRECOVERABLE = 6
POLL = 0.5  # seconds between progress questions to the daemon


def die(message: str, code: int) -> NoReturn:
    """One line naming what is wrong, then exit; as JSON on standard output with --json."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("as_json"):
        click.echo(json.dumps({"error": message, "exit": code}))
    else:
        click.echo(f"repfs-admin: error: {message}", err=True)
    sys.exit(code)


def call(ctx: click.Context, method: str, target: str, body: dict[str, Any] | None = None) -> Any:
    """One request; errors become messages and exit codes."""
    opts = ctx.find_root().obj
    try:
        path = find_socket(opts["socket"], opts["mountpoint"], opts["fs_dir"])
        return AdminClient(path, timeout=opts["timeout"]).request(method, target, body)
    except Unreachable as exc:
        die(str(exc), EXIT_UNREACHABLE)
    except AdminError as exc:
        die(exc.message, EXIT_STATUS.get(exc.status, 1))


def call_user(ctx: click.Context, method: str, target: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the user socket (what an account may ask about itself)."""
    opts = ctx.find_root().obj
    try:
        path = find_user_socket(opts["mountpoint"], opts["fs_dir"])
        return AdminClient(path, timeout=opts["timeout"], user=True).request(method, target, body)
    except Unreachable as exc:
        die(str(exc), EXIT_UNREACHABLE)
    except AdminError as exc:
        die(exc.message, EXIT_STATUS.get(exc.status, 1))


def own_account(ctx: click.Context, name: str) -> dict[str, Any]:
    """The caller's account from the user socket; it must be `name`."""
    mine: dict[str, Any] = call_user(ctx, "GET", "/v1/me")
    if mine["name"] != name:
        die(f"you are {mine['name']}: without the admin group you may see and change only your own account", 3)
    return mine


def is_admin(ctx: click.Context) -> bool:
    """Whether the caller may use the admin socket (else repfs-admin uses the user socket):
    root, or allowed to connect to it (the admin group; mode 0660)."""
    if os.geteuid() == 0:
        return True
    opts = ctx.find_root().obj
    try:
        path = find_socket(opts["socket"], opts["mountpoint"], opts["fs_dir"])
    except Unreachable:
        return False
    return os.access(path, os.W_OK)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")(fn)


def emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def show(value: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """An answer: as JSON with --json, else `text(value)` for people."""
    if as_json:
        emit(value)
    else:
        click.echo(text(value))


def size(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def pct(r: float | None) -> str:
    return "-" if r is None else f"{r * 100:.1f}%"


def when(t: float | None) -> str:
    return "-" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


SIZES = frozenset({"used", "total", "free", "capacity", "dirty_bytes", "clean_bytes"})
TIMES = frozenset({"started", "finished", "usage_measured", "since", "last_seen", "changed"})


def human(key: str, value: Any, sizes: frozenset[str] = SIZES) -> str:
    """A field of an answer as a person reads it: sizes, times, percentages, yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in sizes and isinstance(value, int | float):
        return "none" if key == "capacity" and not value else size(value)
    if key in TIMES and isinstance(value, int | float):
        return when(value)
    if (key.endswith("_ratio") or key.endswith("_threshold")) and isinstance(value, int | float):
        return pct(value)
    if key == "rate_limit" and isinstance(value, int | float):
        return f"{size(value)}/s"
    if key == "eta_seconds" and isinstance(value, int | float):
        return duration(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def fields(info: dict[str, Any], skip: Sequence[str] = (), sizes: frozenset[str] = SIZES) -> str:
    return table([[k, human(k, v, sizes)] for k, v in info.items() if k not in skip], ["FIELD", "VALUE"])


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def in_mount(path: str) -> str:
    """PATH relative to the root of the repfs mount that holds it (or as given, when it is
    not an absolute path under a repfs mount: then it is relative to the root already)."""
    absolute = os.path.abspath(path) if path.startswith((".", "/")) or os.path.exists(path) else None
    if absolute is not None:
        targets = [m.target for m in mountinfo.mounts() if m.source.startswith(mountinfo.FSNAME_PREFIX)]
        for target in sorted(targets, key=len, reverse=True):
            if absolute == target or absolute.startswith(target.rstrip("/") + "/"):
                return os.path.relpath(absolute, target)
    return path
