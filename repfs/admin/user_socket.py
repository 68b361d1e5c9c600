"""The user socket: what an account may ask of the running filesystem about itself.

A Unix socket of mode 0666 beside the admin socket (by default
`/run/repfs/ID/user.sock`, see `auth.user_socket_path`; `repfs-admin -m MOUNTPOINT` finds
it). Anyone may connect; every request is authorized by the peer's uid (SO_PEERCRED),
mapped to its account by `AccountManager.speaking_for`. Only routes about one's own
account are here, and no admin route at all: an unknown path is 404 whoever asks. Root
may act for an account with the header `Repfs-Act-As: NAME` (the web interface does);
anyone else who sends it gets 403. Limits are those of the admin socket (HttpServer).

| method | path | body | answer |
|---|---|---|---|
| GET | /v1/health | | 200 {"ok": true} |
| GET | /v1/me | | 200 ACCOUNT (as on the admin socket: never the password hash) |
| GET | /v1/me/usage | | 200 {"usage": {"bytes", "files"}, "quota": {"max_bytes", "max_files", "soft_bytes"}} |
| PUT | /v1/me/password | {"password", "old_password"?} | 200 {"name", "password_set"} |
| GET, POST | /v1/me/shares, /v1/me/shares/remove | see `shares_api` | shares of what it owns or masters |
| GET | /v1/me/by-sha256?sha256=HEX | | 200 {"sha256", "files": [{"path", "size", "mtime"}], "pending"} |
| GET | /v1/me/accounts?q=PREFIX | | 200 {"accounts": [{"name"}]}: at most 20 accounts that may sign in, to share with |
| GET | /v1/me/info?path=P | | 200 INFO (as `repfs-admin info`): what the account may reach, else 404 |
| POST | /v1/login | {"login", "password"} | root only (the web process): 200 ACCOUNT, 403 otherwise |
| POST | /v1/keys/check | {"token"} or {"cert"} | root only: 200 {"account", "key"}, else 403 |
| POST | /v1/welcome | {"token", "password"} | root only: 200 ACCOUNT, the password a welcome link sets; 403 |
| GET | /v1/client-ca | | root only: 200 {"ca"}: the CA of client certificates (PEM) |
| POST | /v1/me/cert | {"public_key", "days"?, "paths"?, "ops"?, "label"?} | 201 KEY, "cert", "ca" |
| GET, POST | /v1/me/keys | {"paths", "ops", "label"?, "expires"?} | the account's API keys; a new one, token once |
| DELETE | /v1/me/keys/{id} | | 200 KEY: removed |

To root acting for an account, ACCOUNT also carries `password_stamp` (changes with the
password: what web sessions are bound to).

`old_password` is needed when the account has a password, unless root acts for it.
403: no account for the uid, the account is disabled or expired, a wrong old password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from repfs.admin.auth import USER_SOCKET_MODE, Peer, bind_socket, peer_of, remove_socket
from repfs.admin.http import HttpError, HttpServer, Request, Response, Router
from repfs.admin.shares_api import add_user_routes as add_user_share_routes
from repfs.admin.users_api import body_fields, body_text, described, new_cert, new_key
from repfs.control.contents import files_with_content
from repfs.control.info import info
from repfs.errors import InvalidRequest, SetupError, UnknownName
from repfs.fs.accountmanager import AccountManager
from repfs.fs.accounts import Account, AccountError, AccountInvalid, AccountRefused, AccountUnknown
from repfs.fs.audit import Audit
from repfs.fs.locks import LockTable
from repfs.fs.sharemanager import ShareManager

if TYPE_CHECKING:
    from repfs.stack import Layers

log = logging.getLogger(__name__)

ACCOUNTS_FOUND = 20  # names a search for accounts answers at most
ACT_AS = "repfs-act-as"  # request header, lower case as the server keys them


def identify(stream: trio.abc.Stream) -> Peer:
    assert isinstance(stream, trio.SocketStream)
    return peer_of(stream.socket)


class UserSocket:
    def __init__(
        self, accounts: AccountManager, shares: ShareManager, audit: Audit, locks: LockTable, path: Path, *, own: bool
    ) -> None:
        self.accounts = accounts
        self.audit = audit
        self.locks = locks
        self.path = path
        self.own = own  # the folder is repfs's (the default path): removed when empty
        self.server = HttpServer(self._app, identify=identify, name="user socket")
        self._made = False  # whether bind() made the socket's folder (removed after)
        self.router = Router()
        self.router.add("GET", "/v1/health", self.get_health)
        self.router.add("GET", "/v1/me", self.get_me)
        self.router.add("GET", "/v1/me/usage", self.get_usage)
        self.router.add("PUT", "/v1/me/password", self.put_password)
        self.router.add("GET", "/v1/me/info", self.get_info)
        self.router.add("GET", "/v1/me/by-sha256", self.get_by_sha256)
        self.router.add("GET", "/v1/me/accounts", self.get_accounts)
        self.router.add("POST", "/v1/login", self.post_login)
        self.router.add("POST", "/v1/keys/check", self.post_key_check)
        self.router.add("GET", "/v1/client-ca", self.get_client_ca)
        self.router.add("POST", "/v1/welcome", self.post_welcome)
        self.router.add("POST", "/v1/me/cert", self.post_cert)
        self.router.add("GET", "/v1/me/keys", self.get_keys)
        self.router.add("POST", "/v1/me/keys", self.post_key)
        self.router.add("DELETE", "/v1/me/keys/{id}", self.delete_key)
        add_user_share_routes(self.router, shares, lambda request: self._caller(request)[0].uid)

    def bind(self) -> trio.socket.SocketType:
        """The listening socket; SetupError or OSError if it cannot be made."""
        made = not self.path.parent.exists()
        sock = bind_socket(self.path, None, mode=USER_SOCKET_MODE, what="user socket")
        if made:
            self.path.parent.chmod(0o755)
        self._made = made or self.own  # a folder a killed daemon left goes too
        return sock

    async def serve(
        self, sock: trio.socket.SocketType, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; the socket (and the folder made for it) is removed after."""
        ino = self.path.lstat().st_ino
        try:
            await self.server.serve([trio.SocketListener(sock)], task_status=task_status)
        finally:
            remove_socket(self.path, ino)
            if self._made:
                with contextlib.suppress(OSError):
                    self.path.parent.rmdir()

    async def _app(self, request: Request) -> Response:
        try:
            return await self.router(request)
        except AccountRefused as exc:
            raise HttpError(403, str(exc)) from None
        except AccountUnknown as exc:  # root acting for a name that has no account
            raise HttpError(404, str(exc)) from None
        except AccountInvalid as exc:
            raise HttpError(400, str(exc)) from None
        except AccountError as exc:
            raise HttpError(409, str(exc)) from None

    def _caller(self, request: Request) -> tuple[Account, bool]:
        """The account the request speaks for, and whether root acts for it."""
        peer: Peer = request.peer
        act_as = request.headers.get(ACT_AS) or None
        return self.accounts.speaking_for(peer.uid, act_as), act_as is not None

    async def get_health(self, request: Request) -> Response:
        return Response.json(200, {"ok": True})

    async def get_me(self, request: Request) -> Response:
        account, by_root = self._caller(request)
        extra = {"password_stamp": account.password_stamp} if by_root else {}
        return Response.json(200, {**described(self.accounts, account), **extra})

    async def post_login(self, request: Request) -> Response:
        """A password check for the web process (root); nobody else may ask, so the socket
        is no password oracle."""
        peer: Peer = request.peer
        if peer.uid != 0:
            raise HttpError(403, "only root may check passwords")
        body = body_fields(request.json(), {"login", "password"}, {"login", "password"})
        login, password = body_text(body, "login") or "", body_text(body, "password") or ""
        account = await self.accounts.login(login, password)
        return Response.json(200, {**described(self.accounts, account), "password_stamp": account.password_stamp})

    async def get_usage(self, request: Request) -> Response:
        account, _ = self._caller(request)
        used, limits = self.accounts.usage(account)
        return Response.json(200, {"usage": dataclasses.asdict(used), "quota": dataclasses.asdict(limits)})

    async def get_info(self, request: Request) -> Response:
        account, _ = self._caller(request)
        path = request.query.get("path")
        if path is None:
            raise HttpError(400, "give ?path= (relative to the mount point)")
        try:
            return Response.of(200, info(self.accounts.meta, self.locks, path, uid=account.uid))
        except UnknownName as exc:
            raise HttpError(404, str(exc)) from None

    async def get_by_sha256(self, request: Request) -> Response:
        account, _ = self._caller(request)
        meta, hashes = self.accounts.meta, self.accounts.fs.hashes
        try:
            found = files_with_content(meta, hashes, request.query.get("sha256", ""), uid=account.uid)
        except InvalidRequest as exc:
            raise HttpError(400, str(exc)) from None
        return Response.of(200, found)

    async def get_accounts(self, request: Request) -> Response:
        """?q=PREFIX: names of accounts that may sign in, to share with (at most 20; names
        only, as on the mount's /)."""
        self._caller(request)
        prefix, now = request.query.get("q", "")[:32], time.time()
        names = sorted(a.name for a in self.accounts.list() if a.name.startswith(prefix) and a.refused(now) is None)
        return Response.json(200, {"accounts": [{"name": n} for n in names[:ACCOUNTS_FOUND]]})

    async def post_key_check(self, request: Request) -> Response:
        peer: Peer = request.peer
        if peer.uid != 0:
            raise HttpError(403, "only root may check API keys")
        body = body_fields(request.json(), {"token", "cert"}, set())
        if "cert" in body:
            account, key = self.accounts.check_cert(body_text(body, "cert") or "")
        else:
            account, key = self.accounts.check_key(body_text(body, "token") or "")
        return Response.json(200, {"account": described(self.accounts, account), "key": key.public()})

    async def post_welcome(self, request: Request) -> Response:
        peer: Peer = request.peer
        if peer.uid != 0:
            raise HttpError(403, "only root may redeem welcome links")
        body = body_fields(request.json(), {"token", "password"}, {"token", "password"})
        name: str | None = None
        result = "ok"
        try:
            token, password = body_text(body, "token") or "", body_text(body, "password") or ""
            account = await self.accounts.welcome.redeem(token, password)
            name = account.name
        except AccountError as exc:
            result = _result(exc)
            raise
        finally:
            self.audit.write(peer.uid, "me.welcome", f"/{name}" if name else None, result, socket="user")
        return Response.json(200, described(self.accounts, account))

    async def get_client_ca(self, request: Request) -> Response:
        peer: Peer = request.peer
        if peer.uid != 0:
            raise HttpError(403, "only root may ask for the client CA")
        return Response.json(200, {"ca": self.accounts.client_ca()})

    async def post_cert(self, request: Request) -> Response:
        account, by_root = self._caller(request)
        answer = new_cert(self.accounts, account.name, request.json())
        self.audit.write(request.peer.uid, "me.cert", f"/{account.name}", socket="user",
                         act_as=account.name if by_root else None)  # fmt: skip
        return Response.json(201, answer)

    async def get_keys(self, request: Request) -> Response:
        account, _ = self._caller(request)
        return Response.json(200, {"keys": [k.public() for k in self.accounts.keys(account.name)]})

    async def post_key(self, request: Request) -> Response:
        account, by_root = self._caller(request)
        key, token = new_key(self.accounts, account.name, request.json())
        self.audit.write(request.peer.uid, "me.keys.add", f"/{account.name}", socket="user",
                         act_as=account.name if by_root else None)  # fmt: skip
        return Response.json(201, {**key.public(), "token": token})

    async def delete_key(self, request: Request) -> Response:
        account, by_root = self._caller(request)
        key = self.accounts.remove_key(account.name, request.params["id"])
        self.audit.write(request.peer.uid, "me.keys.remove", f"/{account.name}", socket="user",
                         act_as=account.name if by_root else None)  # fmt: skip
        return Response.json(200, key.public())

    async def put_password(self, request: Request) -> Response:
        peer: Peer = request.peer
        result = "ok"
        name: str | None = None
        by_root = False
        try:
            account, by_root = self._caller(request)
            name = account.name
            body = body_fields(request.json(), {"password", "old_password"}, {"password"})
            await self.accounts.change_own_password(
                account, body_text(body, "old_password"), body_text(body, "password") or "", checked=by_root
            )
            return Response.json(200, {"name": account.name, "password_set": True})
        except (AccountError, HttpError) as exc:
            result = _result(exc)
            raise
        finally:
            acting = name if by_root else None
            self.audit.write(peer.uid, "me.passwd", f"/{name}" if name else None, result, socket="user", act_as=acting)


def _result(exc: Exception) -> str:
    if isinstance(exc, HttpError):
        return f"HTTP {exc.status}"
    return "EACCES" if isinstance(exc, AccountRefused) else "EINVAL"


async def serve_user_socket(
    layers: Layers,
    path: Path,
    *,
    explicit: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the user socket at `path`. A default path that cannot be made (a daemon not
    run as root cannot write /run/repfs) turns it off with a warning; an explicit one
    (`--user-socket`) is an error."""
    socket = UserSocket(layers.accounts, layers.shares, layers.audit, layers.locks, path, own=not explicit)
    try:
        sock = socket.bind()
    except (SetupError, OSError) as exc:
        if explicit:
            raise SetupError(f"cannot serve the user socket at {path}: {exc}") from None
        log.warning("no user socket: %s (give --user-socket PATH, or run the daemon as root)", exc)
        task_status.started()
        return
    log.info("user socket at %s", path)
    await socket.serve(sock, task_status=task_status)
