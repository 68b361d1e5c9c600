"""`repfs-admin hold ...`: legal holds on files and folders."""

from __future__ import annotations

from typing import Any

import click

from repfs.admin.cliutil import call, in_mount, json_option, show, table, when


def _rows(answer: dict[str, Any]) -> str:
    if not answer["holds"]:
        return "nothing is on hold"
    rows = [[h["path"], h["by"], when(h["since"]), h["reason"] or "-"] for h in answer["holds"]]
    return table(rows, ["PATH", "BY", "SINCE", "REASON"])


@click.group()
def hold() -> None:
    """Legal holds: what is on hold (and everything in it) cannot be deleted, renamed,
    truncated, written or expired by anyone, root included, until the hold is lifted."""


@hold.command("add")
@click.argument("path")
@click.option("--reason", default="", help="Why (kept with the hold and in the audit log).")
@json_option
@click.pass_context
def hold_add(ctx: click.Context, path: str, reason: str, as_json: bool) -> None:
    """Put PATH on legal hold."""
    answer = call(ctx, "POST", "/v1/holds", {"path": in_mount(path), "reason": reason})
    show(answer, as_json, lambda a: f"{a['path']} is on legal hold")


@hold.command("list")
@json_option
@click.pass_context
def hold_list(ctx: click.Context, as_json: bool) -> None:
    """Everything on hold, by whom, since when, why."""
    show(call(ctx, "GET", "/v1/holds"), as_json, _rows)


@hold.command("remove")
@click.argument("path")
@json_option
@click.pass_context
def hold_remove(ctx: click.Context, path: str, as_json: bool) -> None:
    """Lift the hold on PATH."""
    answer = call(ctx, "POST", "/v1/holds/remove", {"path": in_mount(path)})
    show(answer, as_json, lambda a: f"the hold on {a['path']} is lifted")
