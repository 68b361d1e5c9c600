"""`repfs-admin users ...`: the accounts of a mounted filesystem (see docs/ADMIN.md).

`users show` and `users passwd` work for anyone: a caller who may not use the admin
socket asks the user socket, about its own account only."""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import quote

import click

from repfs.admin.cli_keys import cert, keys
from repfs.admin.cliutil import call, call_user, die, fields, is_admin, json_option, own_account, show, size, table
from repfs.cli_common import read_fd


def _until(info: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(info["valid_until"])) if info["valid_until"] else "-"


def _state(info: dict[str, Any]) -> str:
    if info["disabled"]:
        return "disabled"
    if info["valid_until"] and time.time() > info["valid_until"]:
        return "expired"
    return "active"


def _quota(a: dict[str, Any]) -> str:
    q = a.get("quota", {})
    parts = []
    if q.get("max_bytes"):
        parts.append(size(q["max_bytes"]))
    if q.get("max_files"):
        parts.append(f"{q['max_files']} files")
    return ", ".join(parts) or "-"


def _rows(accounts: list[dict[str, Any]]) -> str:
    rows = [[a["name"], a["uid"], a["email"], _state(a), _until(a), a["usage"]["files"], size(a["usage"]["bytes"]),
             _quota(a)] for a in accounts]  # fmt: skip
    return table(rows, ["NAME", "UID", "EMAIL", "STATE", "VALID UNTIL", "FILES", "SIZE", "QUOTA"])


def _one(info: dict[str, Any]) -> str:
    shown = {**info, "state": _state(info), "valid_until": _until(info)}
    used, limits = shown.pop("usage", {}), shown.pop("quota", {})
    if used:
        shown["files"], shown["used"] = used["files"], size(used["bytes"])
    if limits:
        shown["quota"] = _quota({"quota": limits})
        shown["soft"] = size(limits["soft_bytes"]) if limits.get("soft_bytes") else "-"
        shown["evict_past"] = f"{size(limits['evict_bytes'])} (oldest first)" if limits.get("evict_bytes") else "-"
    shown["created"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["created"]))
    return fields(shown)


def _password(password_fd: int | None) -> str:
    """A new password: from a file descriptor (scripts), else typed twice."""
    if password_fd is not None:
        return read_fd(password_fd).decode()
    if not sys.stdin.isatty():
        die("no terminal to type the password on: give --password-fd N", 2)
    value: str = click.prompt("new password", hide_input=True, confirmation_prompt="again")
    return value


@click.group()
def users() -> None:
    """Accounts: the people who share the filesystem, each with a namespace /NAME."""


@users.command("list")
@json_option
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """Every account: uid, email, state, validity."""
    show(call(ctx, "GET", "/v1/users"), as_json, _rows)


@users.command("show")
@click.argument("name")
@json_option
@click.pass_context
def users_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One account in full (never its password); your own if you are not an administrator."""
    if is_admin(ctx):
        show(call(ctx, "GET", f"/v1/users/{quote(name)}"), as_json, _one)
        return
    show(own_account(ctx, name), as_json, _one)


@users.command("me")
@json_option
@click.pass_context
def users_me(ctx: click.Context, as_json: bool) -> None:
    """Your own account (from the user socket: anyone may ask)."""
    show(call_user(ctx, "GET", "/v1/me"), as_json, _one)


@users.command("add")
@click.argument("name")
@click.option("--email", required=True, help="The account's email address (unique).")
@click.option("--uid", type=int, help="The host uid of NAME (checked against passwd).")
@click.option("--create-system-user", is_flag=True, help="Make NAME a user of this host (useradd), no shell.")
@click.option("--valid-until", metavar="YYYY-MM-DD", help="The last day the account may be used.")
@click.option("--password-fd", type=int, help="Read a password from this file descriptor.")
@click.option("--temporary", is_flag=True, help="The account must change that password at its first web sign-in.")
@json_option
@click.pass_context
def users_add(
    ctx: click.Context,
    name: str,
    email: str,
    uid: int | None,
    create_system_user: bool,
    valid_until: str | None,
    password_fd: int | None,
    temporary: bool,
    as_json: bool,
) -> None:
    """Add an account and its namespace /NAME (mode 0700, private to NAME)."""
    body: dict[str, Any] = {"name": name, "email": email, "create_system_user": create_system_user}
    if uid is not None:
        body["uid"] = uid
    if valid_until is not None:
        body["valid_until"] = valid_until
    if password_fd is not None:
        body["password"] = read_fd(password_fd).decode()
        body["password_temporary"] = temporary
    elif temporary:
        die("--temporary is for a password given with --password-fd", 2)
    info = call(ctx, "POST", "/v1/users", body)
    show(info, as_json, lambda a: f"account {a['name']} added (uid {a['uid']}); its namespace is /{a['name']}\n"
         + _mailed(a["mail"]))  # fmt: skip


def _mailed(sent: dict[str, Any]) -> str:
    if sent["sent"]:
        return f"mail with its login details and a link to set its password sent to {sent['to']}"
    return str(sent["why"])


@users.command("welcome")
@click.argument("name")
@json_option
@click.pass_context
def users_welcome(ctx: click.Context, name: str, as_json: bool) -> None:
    """Mail account NAME its login details again, with a new one-time link to set its
    password (earlier links end)."""
    answer = call(ctx, "POST", f"/v1/users/{quote(name)}/welcome")
    show(answer, as_json, lambda a: _mailed(a["mail"]))


@users.command("set")
@click.argument("name")
@click.option("--email", help="A new email address.")
@click.option("--valid-until", metavar="YYYY-MM-DD", help="The last day the account may be used; '' for no end.")
@click.option("--quota", metavar="SIZE", help="Hard limit on the bytes of the namespace (e.g. 10G; 0: none).")
@click.option("--quota-files", metavar="N", help="Hard limit on the number of files and folders (0: none).")
@click.option("--soft", metavar="SIZE", help="Soft limit: a warning, a status entry and a metric past it (0: none).")
@click.option("--max-size", metavar="SIZE", help="Past this size the oldest files are removed (needs --evict oldest).")
@click.option("--evict", type=click.Choice(["oldest", "none"]), help="How to get under --max-size; none: never evict.")
@json_option
@click.pass_context
def users_set(
    ctx: click.Context,
    name: str,
    email: str | None,
    valid_until: str | None,
    quota: str | None,
    quota_files: str | None,
    soft: str | None,
    max_size: str | None,
    evict: str | None,
    as_json: bool,
) -> None:
    """Change an account's email, validity, quota or eviction size."""
    body: dict[str, Any] = {}
    for key, value in (("email", email), ("valid_until", valid_until), ("quota", quota), ("quota_files", quota_files),
                       ("soft", soft), ("max_size", max_size), ("evict", evict)):  # fmt: skip
        if value is not None:
            body[key] = value
    if not body:
        die("nothing to change: give --email, --valid-until, --quota, --quota-files, --soft, --max-size or --evict", 2)
    show(call(ctx, "PATCH", f"/v1/users/{quote(name)}", body), as_json, _one)


@users.command("disable")
@click.argument("name")
@json_option
@click.pass_context
def users_disable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Refuse the account every operation on the mount (EACCES) until it is enabled."""
    show(call(ctx, "POST", f"/v1/users/{quote(name)}/disable"), as_json, lambda a: f"account {a['name']} disabled")


@users.command("enable")
@click.argument("name")
@json_option
@click.pass_context
def users_enable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Let a disabled account use the mount again."""
    show(call(ctx, "POST", f"/v1/users/{quote(name)}/enable"), as_json, lambda a: f"account {a['name']} enabled")


@users.command("passwd")
@click.argument("name")
@click.option("--password-fd", type=int, help="Read the password from this file descriptor instead of a prompt.")
@click.option("--old-password-fd", type=int, help="Your current password from this file descriptor (not as admin).")
@click.option("--temporary", is_flag=True, help="As administrator: the account must change it at its next web sign-in.")
@json_option
@click.pass_context
def users_passwd(
    ctx: click.Context, name: str, password_fd: int | None, old_password_fd: int | None, temporary: bool,
    as_json: bool,
) -> None:
    """Set an account's password (typed twice, or from --password-fd). Not an administrator:
    your own, and your current password is asked first."""
    if is_admin(ctx):
        body = {"password": _password(password_fd), "temporary": temporary}
        answer = call(ctx, "PUT", f"/v1/users/{quote(name)}/password", body)
        show(answer, as_json, _password_set)
        return
    if temporary:
        die("--temporary is for administrators setting another account's password", 2)
    mine = own_account(ctx, name)
    body = {}
    if mine["password_set"]:
        body["old_password"] = _current(old_password_fd)
    body["password"] = _password(password_fd)
    show(call_user(ctx, "PUT", "/v1/me/password", body), as_json, _password_set)


def _password_set(answer: dict[str, Any]) -> str:
    return f"account {answer['name']}: password set"


def _current(fd: int | None) -> str:
    if fd is not None:
        return read_fd(fd).decode()
    if not sys.stdin.isatty():
        die("no terminal to type your current password on: give --old-password-fd N", 2)
    value: str = click.prompt("current password", hide_input=True)
    return value


@users.command("remove")
@click.argument("name")
@click.option("--delete-files", is_flag=True, help="Delete every file in /NAME first (else it must be empty).")
@json_option
@click.pass_context
def users_remove(ctx: click.Context, name: str, delete_files: bool, as_json: bool) -> None:
    """Remove an account and its (empty, or with --delete-files emptied) namespace."""
    target = f"/v1/users/{quote(name)}" + ("?delete_files=1" if delete_files else "")
    show(call(ctx, "DELETE", target), as_json, lambda a: f"account {a['name']} removed")


users.add_command(keys)
users.add_command(cert)
