"""Welcome mail: when an account is made (or on `repfs-admin users welcome`), its owner
gets a mail with the login name, the web interface's address, the account's validity and
a one-time link that sets the password (never a password itself). The link's token is a
key of kind `setup` (`fs.apikeys`), good once and for 72 hours; the web process redeems it
over the user socket. Without SMTP settings nothing is sent, and the answer says so.
"""

from __future__ import annotations

import datetime
import logging
import smtplib
import time
from dataclasses import asdict, dataclass, replace

import trio

from repfs.fs import accounts as acc
from repfs.fs import apikeys, mail
from repfs.fs.accounts import Account, AccountRefused
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

LINK_TTL = 72 * 3600.0
SEND_DEADLINE = 4 * mail.TIMEOUT  # connect, greet, STARTTLS and login, send
REFUSED = "the link is not valid (used, expired or replaced by a newer one)"


@dataclass(frozen=True)
class Sent:
    """What became of a welcome mail."""

    sent: bool
    to: str
    why: str = ""  # when not sent
    link_expires: float = 0.0

    def public(self) -> dict[str, object]:
        return asdict(self)


def text(account: Account, web_url: str, token: str, link_expires: float) -> str:
    until = (datetime.date.fromtimestamp(account.valid_until).isoformat() if account.valid_until
             else "no end date")  # fmt: skip
    expires = datetime.datetime.fromtimestamp(link_expires, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Hello,\n\nan account on repfs was made for you.\n\n"
        f"  login name:   {account.name}\n"
        f"  web address:  {web_url}/\n"
        f"  valid until:  {until}\n\n"
        f"Set your password here (the link works once, until {expires}):\n\n"
        f"  {web_url}/welcome#{token}\n\n"
        f"Your files are in the folder /{account.name}. If you did not expect this mail, ignore it.\n"
    )


class Welcome:
    def __init__(self, meta: MetaStore, hashing: trio.CapacityLimiter) -> None:
        self.meta = meta
        self._hashing = hashing
        self._sending = trio.CapacityLimiter(2)

    async def send(self, name: str) -> Sent:
        """Mail `name` its login details and a new one-time link (earlier links end)."""
        with self.meta.read() as t:
            account = acc.get_or_fail(t, name)
            config = mail.settings(t)
        if config is None:
            return Sent(False, account.email, "no mail was sent: there are no SMTP settings (repfs-admin mail set)")
        with self.meta.write() as t:
            key, token = apikeys.make_setup(t, name, LINK_TTL)
        body = text(account, config.web_url, token, key.expires)
        why = ""
        with trio.move_on_after(SEND_DEADLINE) as waited:
            try:
                await trio.to_thread.run_sync(mail.send, config, account.email, "Your repfs account", body,
                                              limiter=self._sending, abandon_on_cancel=True)  # fmt: skip
            except (OSError, smtplib.SMTPException) as exc:
                why = f"the mail to {account.email} was not sent: {exc}"
        if waited.cancelled_caught:
            why = f"the mail to {account.email} was not sent: the SMTP server did not answer in {SEND_DEADLINE:.0f} s"
        if why:
            with self.meta.write() as t:
                apikeys.remove(t, name, key.id)
            log.warning("account %s: %s", name, why)
            return Sent(False, account.email, why)
        log.info("account %s: welcome mail sent to %s", name, account.email)
        return Sent(True, account.email, link_expires=key.expires)

    async def redeem(self, token: str, password: str) -> Account:
        """Set the password of the account a link names; the link is used up. A token that
        is no link is refused before the (slow, one at a time) password hash: guessing
        costs the guesser, not the sign-ins of others."""
        with self.meta.read() as t:
            if apikeys.setup_key(t, token) is None:
                raise AccountRefused(REFUSED)
        hashed = await trio.to_thread.run_sync(acc.hash_password, password, limiter=self._hashing)
        with self.meta.write() as t:
            key = apikeys.redeem_setup(t, token)
            account = acc.get(t, key.account) if key is not None else None
            if key is None or account is None:
                raise AccountRefused(REFUSED)
            why = account.refused(time.time())
            if why is not None:
                raise AccountRefused(why)
            account = replace(account, password=hashed, password_temporary=False)
            acc.put(t, account)
        log.info("account %s: password set by its welcome link", account.name)
        return account
