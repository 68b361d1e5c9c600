"""`repfs-admin mail ...`: how repfs mails account holders (the welcome mail of `users
add`: login name, the web interface's address, validity and a one-time link to set the
password)."""

from __future__ import annotations

from typing import Any

import click

from repfs.admin.cliutil import call, json_option, show
from repfs.cli_common import read_fd
from repfs.fs.mail import SECURITY


def _shown(a: dict[str, Any]) -> str:
    if not a["configured"]:
        return "no SMTP settings: no mail is sent (repfs-admin mail set)"
    login = f", as {a['user']} (password {'set' if a['password_set'] else 'none'})" if a["user"] else ""
    return f"mail from {a['sender']} through {a['host']}:{a['port']} ({a['security']}){login}; links to {a['web_url']}/"


@click.group()
def mail() -> None:
    """SMTP settings for mail to account holders."""


@mail.command("set")
@click.option("--host", required=True, help="The SMTP server.")
@click.option("--port", type=click.IntRange(1, 65535), default=587, show_default=True)
@click.option("--security", type=click.Choice(SECURITY), default="starttls", show_default=True,
              help="starttls: upgrade on the port; tls: TLS from the start (465); none: plain.")  # fmt: skip
@click.option("--from", "sender", required=True, metavar="ADDRESS", help="The sender address.")
@click.option("--web-url", required=True, metavar="URL",
              help="The web interface's address, for links in mails (https://files.example.org:8443).")  # fmt: skip
@click.option("--user", default="", help="Log in to the SMTP server as this user.")
@click.option("--password-fd", type=int, help="Read the SMTP password from this file descriptor (never an argument).")
@json_option
@click.pass_context
def mail_set(
    ctx: click.Context, host: str, port: int, security: str, sender: str, web_url: str, user: str,
    password_fd: int | None, as_json: bool,
) -> None:  # fmt: skip
    """Send mail through an SMTP server (kept in the metadata; the password is never shown)."""
    body: dict[str, Any] = {"host": host, "port": port, "security": security, "sender": sender, "web_url": web_url,
                            "user": user}  # fmt: skip
    if password_fd is not None:
        body["password"] = read_fd(password_fd).decode().rstrip("\n")
    show(call(ctx, "PUT", "/v1/mail", body), as_json, _shown)


@mail.command("show")
@json_option
@click.pass_context
def mail_show(ctx: click.Context, as_json: bool) -> None:
    """The SMTP settings."""
    show(call(ctx, "GET", "/v1/mail"), as_json, _shown)


@mail.command("clear")
@json_option
@click.pass_context
def mail_clear(ctx: click.Context, as_json: bool) -> None:
    """Forget the SMTP settings: no mail is sent any more."""
    show(call(ctx, "DELETE", "/v1/mail"), as_json, _shown)


@mail.command("test")
@click.argument("to")
@json_option
@click.pass_context
def mail_test(ctx: click.Context, to: str, as_json: bool) -> None:
    """Send a test mail to TO (the SMTP server's refusal is shown as it said it)."""
    show(call(ctx, "POST", "/v1/mail/test", {"to": to}), as_json, lambda a: f"test mail sent to {a['to']}")
