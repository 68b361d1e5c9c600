"""The web process's calls to the mount daemon's user socket, acting for an account
(`Repfs-Act-As`: the web process runs as root, the only caller allowed to act for others).
Blocking socket calls run in worker threads, a bounded number at once, each with a deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

from repfs.admin.client import AdminClient
from repfs.admin.user_socket import ACT_AS

TIMEOUT = 30.0


class Control:
    def __init__(self, socket: Path, *, concurrency: int = 16) -> None:
        self.client = AdminClient(socket, timeout=TIMEOUT, user=True)
        self.limiter = trio.CapacityLimiter(concurrency)

    async def call(self, method: str, target: str, body: dict[str, Any] | None = None, *, act_as: str | None) -> Any:
        headers = {ACT_AS: act_as} if act_as else None
        return await trio.to_thread.run_sync(
            lambda: self.client.request(method, target, body, headers=headers), limiter=self.limiter
        )

    async def login(self, login: str, password: str) -> dict[str, Any]:
        """The account, if the password is right (AdminError 403 otherwise)."""
        body = {"login": login, "password": password}
        answer: dict[str, Any] = await self.call("POST", "/v1/login", body, act_as=None)
        return answer

    async def check_key(self, token: str) -> dict[str, Any]:
        """{"account", "key"} of a valid API key (AdminError 403 otherwise)."""
        answer: dict[str, Any] = await self.call("POST", "/v1/keys/check", {"token": token}, act_as=None)
        return answer

    async def check_cert(self, pem: str) -> dict[str, Any]:
        """{"account", "key"} of a client certificate the TLS handshake verified (AdminError 403 otherwise)."""
        answer: dict[str, Any] = await self.call("POST", "/v1/keys/check", {"cert": pem}, act_as=None)
        return answer

    async def redeem_welcome(self, token: str, password: str) -> dict[str, Any]:
        """Set the password a welcome link names (AdminError 403 for a used or unknown link, 400 a bad password)."""
        answer: dict[str, Any] = await self.call("POST", "/v1/welcome", {"token": token, "password": password},
                                                 act_as=None)  # fmt: skip
        return answer

    async def client_ca(self) -> str:
        """The CA certificate (PEM) of client certificates."""
        answer: dict[str, Any] = await self.call("GET", "/v1/client-ca", act_as=None)
        return str(answer["ca"])

    async def by_sha256(self, account: str, sha256: str) -> dict[str, Any]:
        """The files with that content the account may reach, and how many wait for their hash."""
        answer: dict[str, Any] = await self.call("GET", f"/v1/me/by-sha256?sha256={quote(sha256)}", act_as=account)
        return answer

    async def me(self, account: str) -> dict[str, Any]:
        """The account as it is now (AdminError 403 when disabled or expired, 404 when gone)."""
        answer: dict[str, Any] = await self.call("GET", "/v1/me", act_as=account)
        return answer

    async def usage(self, account: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", "/v1/me/usage", act_as=account)
        return answer

    async def info(self, account: str, path: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", f"/v1/me/info?path={quote(path, safe='/')}", act_as=account)
        return answer

    async def set_password(self, account: str, old: str | None, new: str) -> None:
        body = {"password": new} | ({"old_password": old} if old is not None else {})
        await self.call("PUT", "/v1/me/password", body, act_as=account)
