"""`repfs-admin shares ...`: who may read or edit what (see docs/ADMIN.md, "Shares").

An administrator's commands go to the admin socket, as root; anyone else's to the user
socket, as their own account (on what they own or are master of)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from repfs.admin.cliutil import call, call_user, die, in_mount, is_admin, json_option, show, table, when


def _rows(shares: list[dict[str, Any]]) -> str:
    if not shares:
        return "no shares"
    rows = [[s["path"], s["user"], s["role"], s["by"], when(s["since"])] for s in shares]
    return table(rows, ["PATH", "USER", "ROLE", "BY", "SINCE"])


def _done(verb: str) -> Any:
    return lambda s: f"{s['path']} {verb} {s['user']} ({s['role']})"


@click.group()
def shares() -> None:
    """Shares: an owner lets other accounts read (reader), edit (editor) or also share
    (master) a file or a folder and everything in it."""


@shares.command("add")
@click.argument("path")
@click.argument("user")
@click.option("--role", type=click.Choice(["reader", "editor", "master"]), required=True)
@json_option
@click.pass_context
def shares_add(ctx: click.Context, path: str, user: str, role: str, as_json: bool) -> None:
    """Share PATH with the account USER as ROLE (again: change the role)."""
    body = {"path": in_mount(path), "user": user, "role": role}
    answer = call(ctx, "POST", "/v1/shares", body) if is_admin(ctx) else call_user(ctx, "POST", "/v1/me/shares", body)
    show(answer, as_json, _done("shared with"))


@shares.command("remove")
@click.argument("path")
@click.argument("user")
@json_option
@click.pass_context
def shares_remove(ctx: click.Context, path: str, user: str, as_json: bool) -> None:
    """End USER's share of PATH (new opens and path walks are refused at once)."""
    body = {"path": in_mount(path), "user": user}
    if is_admin(ctx):
        answer = call(ctx, "POST", "/v1/shares/remove", body)
    else:
        answer = call_user(ctx, "POST", "/v1/me/shares/remove", body)
    show(answer, as_json, _done("no longer shared with"))


@shares.command("list")
@click.argument("path", required=False)
@click.option("--user", help="The shares this account was given.")
@click.option("--mine", is_flag=True, help="Your shares: of what you own, and what you were given.")
@json_option
@click.pass_context
def shares_list(ctx: click.Context, path: str | None, user: str | None, mine: bool, as_json: bool) -> None:
    """Every share, those that apply to PATH, those USER was given, or (--mine) yours."""
    if sum(bool(x) for x in (path, user, mine)) > 1:
        die("give PATH, --user or --mine, not several", 2)
    if mine or not is_admin(ctx):
        if path or user:
            die("without the admin group only --mine is yours to list", 3)
        answer = call_user(ctx, "GET", "/v1/me/shares")
        show(answer, as_json, lambda a: "yours:\n" + _rows(a["mine"]) + "\n\ngiven to you:\n" + _rows(a["given"]))
        return
    target = "/v1/shares"
    if path:
        target += "?path=" + quote(in_mount(path), safe="")
    elif user:
        target += "?user=" + quote(user, safe="")
    show(call(ctx, "GET", target)["shares"], as_json, _rows)
