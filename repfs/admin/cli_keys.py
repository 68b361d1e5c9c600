"""`repfs-admin users keys ...`: API keys of an account, for application servers that call
the web API (`repfs web`). Administrators manage anyone's; an account holder its own
(through the user socket)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from repfs.admin.cliutil import call, call_user, in_mount, is_admin, json_option, own_account, show, table, when
from repfs.fs.apikeys import OPS


def _keys_call(ctx: click.Context, name: str, method: str, tail: str = "", body: dict[str, Any] | None = None) -> Any:
    if is_admin(ctx):
        return call(ctx, method, f"/v1/users/{quote(name)}/keys{tail}", body)
    own_account(ctx, name)  # your own account only
    return call_user(ctx, method, f"/v1/me/keys{tail}", body)


def _rows(answer: dict[str, Any]) -> str:
    if not answer["keys"]:
        return "no API keys"
    rows = [[k["id"], k["label"] or "-", ",".join(k["ops"]), " ".join(k["paths"]), when(k["created"]),
             when(k["expires"]) if k["expires"] else "never"] for k in answer["keys"]]  # fmt: skip
    return table(rows, ["ID", "LABEL", "OPS", "PATHS", "CREATED", "EXPIRES"])


@click.group()
def keys() -> None:
    """API keys: credentials an application server uses for the web API, acting as the
    account inside the key's paths and operations only."""


@keys.command("list")
@click.argument("name")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """The keys of account NAME (never their secrets)."""
    show(_keys_call(ctx, name, "GET"), as_json, _rows)


@keys.command("add")
@click.argument("name")
@click.option("--path", "paths", multiple=True, required=True, metavar="PATH",
              help="A folder the key may use, and all in it (again for more).")  # fmt: skip
@click.option("--ops", default="read", show_default=True, metavar="OPS", help=f"What it may do: {', '.join(OPS)}.")
@click.option("--label", default="", help="What it is for (shown in lists).")
@click.option("--expires", metavar="YYYY-MM-DD", help="The last day it may be used [default: never].")
@json_option
@click.pass_context
def keys_add(
    ctx: click.Context, name: str, paths: tuple[str, ...], ops: str, label: str, expires: str | None, as_json: bool
) -> None:
    """Make an API key for account NAME; its token is shown once."""
    wanted = [o.strip() for o in ops.split(",") if o.strip()]
    body: dict[str, Any] = {"paths": [in_mount(p) for p in paths], "ops": wanted, "label": label}
    if expires:
        body["expires"] = expires
    answer = _keys_call(ctx, name, "POST", "", body)
    show(answer, as_json, lambda a: f"API key {a['id']} for {a['account']}: {a['token']}\n"
         "(keep it: it is not shown again; send it as Authorization: Bearer TOKEN)")  # fmt: skip


@keys.command("remove")
@click.argument("name")
@click.argument("key_id")
@json_option
@click.pass_context
def keys_remove(ctx: click.Context, name: str, key_id: str, as_json: bool) -> None:
    """Remove (revoke) key KEY_ID of account NAME: it stops working at once."""
    answer = _keys_call(ctx, name, "DELETE", f"/{quote(key_id)}")
    show(answer, as_json, lambda a: f"API key {a['id']} of {a['account']} removed")
