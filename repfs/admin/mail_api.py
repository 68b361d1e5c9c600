"""Admin-socket routes of the mail settings (`repfs-admin mail ...`) and welcome mails.

| method | path | body | answer |
|---|---|---|---|
| GET | /v1/mail | | 200 SETTINGS (never the password), or {"configured": false} |
| PUT | /v1/mail | {"host", "port"?, "sender", "web_url", "security"?, "user"?, "password"?} | 200 SETTINGS |
| DELETE | /v1/mail | | 200 {"configured": false}: no mail is sent any more |
| POST | /v1/mail/test | {"to"} | 200 {"sent": true}; 502 with the server's answer otherwise |
| POST | /v1/users/{name}/welcome | | 200 {"mail": SENT}: a new one-time link mailed (earlier ones end) |
"""

from __future__ import annotations

import smtplib
from typing import Any

import trio

from repfs.admin.http import HttpError, Request, Response, Router
from repfs.admin.users_api import body_fields, body_text, mapped
from repfs.errors import InvalidRequest
from repfs.fs import mail
from repfs.fs.accountmanager import AccountManager
from repfs.fs.audit import Audit
from repfs.fs.welcome import SEND_DEADLINE


def _settings(raw: object, old: mail.MailSettings | None) -> mail.MailSettings:
    body = body_fields(raw, {"host", "port", "sender", "web_url", "security", "user", "password"},
                       {"host", "sender", "web_url"})  # fmt: skip
    port = body.get("port", 587)
    if not isinstance(port, int) or isinstance(port, bool):
        raise HttpError(400, "port must be a number")
    user = body_text(body, "user") or ""
    password = body_text(body, "password")
    if password is None and old is not None and old.user == user:
        password = old.password  # a change of the host or address keeps the password
    try:
        return mail.MailSettings(body_text(body, "host") or "", port, body_text(body, "sender") or "",
                                 body_text(body, "web_url") or "", body_text(body, "security") or "starttls",
                                 user, password or "").checked()  # fmt: skip
    except InvalidRequest as exc:
        raise HttpError(400, str(exc)) from None


def add_routes(router: Router, manager: AccountManager, audit: Audit) -> None:
    meta = manager.meta

    def current() -> mail.MailSettings | None:
        with meta.read() as t:
            return mail.settings(t)

    async def get_mail(request: Request) -> Response:
        config = current()
        return Response.json(200, {"configured": True, **config.public()} if config else {"configured": False})

    async def put_mail(request: Request) -> Response:
        config = _settings(request.json(), current())
        with meta.write() as t:
            mail.set_settings(t, config)
        return Response.json(200, {"configured": True, **config.public()})

    async def delete_mail(request: Request) -> Response:
        with meta.write() as t:
            mail.set_settings(t, None)
        return Response.json(200, {"configured": False})

    async def test_mail(request: Request) -> Response:
        to = body_text(body_fields(request.json(), {"to"}, {"to"}), "to") or ""
        config = current()
        if config is None:
            raise HttpError(409, "there are no SMTP settings: repfs-admin mail set")
        if "@" not in to or any(c in to for c in "\r\n"):
            raise HttpError(400, "to must be a mail address")
        text = f"This is a test mail from repfs. Links in its mails point to {config.web_url}/.\n"
        answer: dict[str, Any] = {"sent": True, "to": to}
        with trio.move_on_after(SEND_DEADLINE) as waited:
            try:
                await trio.to_thread.run_sync(mail.send, config, to, "repfs test mail", text, abandon_on_cancel=True)
            except (OSError, smtplib.SMTPException) as exc:
                raise HttpError(502, f"the mail was not sent: {exc}") from None
        if waited.cancelled_caught:
            raise HttpError(504, f"the SMTP server did not answer in {SEND_DEADLINE:.0f} s")
        return Response.json(200, answer)

    async def welcome(request: Request) -> Response:
        return Response.json(200, {"mail": (await manager.welcome.send(request.params["name"])).public()})

    router.add("GET", "/v1/mail", mapped(get_mail, audit, None))
    router.add("PUT", "/v1/mail", mapped(put_mail, audit, "mail.set"))
    router.add("DELETE", "/v1/mail", mapped(delete_mail, audit, "mail.clear"))
    router.add("POST", "/v1/mail/test", mapped(test_mail, audit, "mail.test"))
    router.add("POST", "/v1/users/{name}/welcome", mapped(welcome, audit, "users.welcome"))
