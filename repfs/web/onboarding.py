"""The first start: making the first administrator from the browser.

While no account is an administrator (none of them in the admin group), `GET /api/v1/setup`
says so and `POST /api/v1/setup` makes one: a new account (and host user) with a password,
added to the admin group (made when it does not exist). It is taken only from the same host
(a loopback peer), or with the one-time token `repfs web` writes to its log at start, so a
stranger who reaches the port first cannot make himself administrator. Once an
administrator exists both answer 409 and the token is gone.
"""

from __future__ import annotations

import grp
import hmac
import ipaddress
import logging
import pwd
import secrets
import subprocess
from collections.abc import Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from repfs.admin.auth import DEFAULT_ADMIN_GROUP
from repfs.web.accounts_api import AccountsApi
from repfs.web.bodies import json_body, text
from repfs.web.errors import ApiError

log = logging.getLogger(__name__)

HOST_TIMEOUT = 30.0  # seconds for groupadd / usermod
CHECK_AGAIN = 60.0  # seconds an administrator once seen is taken to exist


class Onboarding:
    def __init__(self, accounts: AccountsApi, group: str | None) -> None:
        self.accounts = accounts
        self.group = group or DEFAULT_ADMIN_GROUP
        self.token: str | None = None
        self._lock = trio.Lock()  # two first administrators at once: one wins
        self._settled = -CHECK_AGAIN  # when an administrator was last seen (monotonic)

    async def start(self, base_url: str) -> None:
        """At start: while no administrator exists, a one-time token in the log."""
        if self.accounts.admin is None or not await self.needed():
            return
        self.token = secrets.token_urlsafe(18)
        log.warning("no administrator yet: open %s/#/setup on this host, or %s/#/setup/%s from elsewhere "
                    "(the token works once)", base_url, base_url, self.token)  # fmt: skip

    async def needed(self, *, fresh: bool = False) -> bool:
        """Whether no account is an administrator. Once one was seen the answer is kept a
        minute (unless `fresh`): anyone may ask, and asking lists every account."""
        if not fresh and trio.current_time() - self._settled < CHECK_AGAIN:
            return False
        users = await self.accounts.admin_request("GET", "/v1/users")
        gid = self.accounts.admin_gid
        if gid is None:
            return True
        names = {str(u["name"]) for u in users}
        if names & await trio.to_thread.run_sync(_members, gid):
            self._settled = trio.current_time()
            return False
        return True

    async def get_setup(self, request: Request) -> Response:
        needed = self.accounts.admin is not None and await self.needed()
        return JSONResponse({"needed": needed, "local": _local(request), "group": self.group})

    async def post_setup(self, request: Request) -> Response:
        body = await json_body(request, {"name", "email", "password", "token"}, {"name", "email", "password"})
        if self.accounts.admin is None:
            raise ApiError(409, "conflict", "repfs web has no admin socket: add accounts with repfs-admin")
        token = body.get("token")
        if not _local(request) and not (isinstance(token, str) and self.token is not None
                                        and hmac.compare_digest(token, self.token)):  # fmt: skip
            raise ApiError(403, "forbidden", "from another host, give the one-time token repfs web wrote to its log")
        name, email = text(body, "name", longest=32), text(body, "email", longest=320)
        async with self._lock:
            if not await self.needed(fresh=True):
                self.token = None
                raise ApiError(409, "conflict", "an administrator exists already: sign in")
            gid = await trio.to_thread.run_sync(_admin_group, self.group)
            made = {"name": name, "email": email, "password": text(body, "password", longest=1024),
                    "create_system_user": _host_user(name) is None}  # fmt: skip
            account = await self.accounts.admin_request("POST", "/v1/users", made)
            await trio.to_thread.run_sync(_join, name, self.group)
            self.accounts.admin_gid = gid
            self.token = None
        log.warning("first administrator %s made (member of group %s)", name, self.group)
        return JSONResponse({k: v for k, v in account.items() if k != "mail"}, status_code=201)

    def routes(self, r: Callable[..., Any]) -> list[Route]:
        return [
            Route("/api/v1/setup", r(self.get_setup, auth=False), methods=["GET"]),
            Route("/api/v1/setup", r(self.post_setup, auth=False), methods=["POST"]),
        ]


def _local(request: Request) -> bool:
    client = request.scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _members(gid: int) -> set[str]:
    """The host users in group `gid`: its listed members and those whose primary group it is."""
    try:
        names = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return set()
    return names | {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}


def _host_user(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _host(*cmd: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=HOST_TIMEOUT)
    except FileNotFoundError:
        raise ApiError(500, "error", f"{cmd[0]} is not installed here (Debian: the passwd package)") from None
    except subprocess.CalledProcessError as exc:
        raise ApiError(500, "error", f"{cmd[0]} failed: {exc.stderr.strip() or exc.returncode}") from None


def _admin_group(name: str) -> int:
    """The admin group's gid, made first if the host has none of that name."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _host("groupadd", "--system", name)
        return grp.getgrnam(name).gr_gid


def _join(user: str, group: str) -> None:
    _host("usermod", "--append", "--groups", group, user)
