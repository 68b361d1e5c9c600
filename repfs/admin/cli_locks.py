"""`repfs-admin locks ...`: which files are locked by whom, and breaking a lock."""

from __future__ import annotations

from typing import Any

import click

from repfs.admin.cliutil import call, in_mount, json_option, show, table, when


def _rows(answer: dict[str, Any]) -> str:
    held = answer["locks"]
    if not held:
        return "no file is locked"
    rows = [[lock["path"], lock["holder"], when(lock["since"]), lock["how"], lock["handles"]] for lock in held]
    return table(rows, ["PATH", "HOLDER", "SINCE", "HOW", "HANDLES"])


@click.group()
def locks() -> None:
    """Locks: a file one account has open for writing is locked against the others."""


@locks.command("list")
@json_option
@click.pass_context
def locks_list(ctx: click.Context, as_json: bool) -> None:
    """Every lock: the file, its holder, since when and how."""
    show(call(ctx, "GET", "/v1/locks"), as_json, _rows)


@locks.command("break")
@click.argument("path")
@json_option
@click.pass_context
def locks_break(ctx: click.Context, path: str, as_json: bool) -> None:
    """End the lock on PATH: its holder's writes through the handles it has fail (EIO)."""
    answer = call(ctx, "POST", "/v1/locks/break", {"path": in_mount(path)})
    show(answer, as_json, lambda a: f"lock of {a['holder']} on {a['path']} broken")
