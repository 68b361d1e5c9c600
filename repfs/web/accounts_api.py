"""The API's account routes: shares (as the signed-in account, by the user socket's rules),
and for administrators the accounts, pools and status (by the admin socket). A transport:
the daemon decides; this module only chooses the socket and passes the answer on.

An administrator is an account whose host user is in the admin group (`--admin-group`,
default `repfs-admin`), as for `repfs-admin` on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from repfs.admin.client import AdminClient
from repfs.web import files, keyscope
from repfs.web.asuser import ROOT, Workers
from repfs.web.bodies import json_body, number
from repfs.web.control import Control
from repfs.web.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

TIMEOUT = 60.0
ACCOUNT_FIELDS = {"email", "valid_until", "quota", "quota_files", "soft", "max_size", "evict"}


class AccountsApi:
    def __init__(
        self, control: Control, tree: files.Tree, workers: Workers, admin_socket: Path | None, admin_gid: int | None
    ) -> None:
        self.control = control
        self.tree = tree
        self.workers = workers
        self.admin = AdminClient(admin_socket, timeout=TIMEOUT) if admin_socket is not None else None
        self.admin_gid = admin_gid
        self.limiter = trio.CapacityLimiter(8)

    def is_admin(self, request: Request) -> bool:
        who = request.state.who
        return self.admin_gid is not None and self.admin_gid in who.groups

    async def _admin_call(self, request: Request, method: str, target: str, body: Any = None) -> Any:
        keyscope.check(request, None)
        if not self.is_admin(request) or self.admin is None:
            raise ApiError(403, "forbidden", "only administrators may (members of the admin group)")
        return await self.admin_request(method, target, body)

    async def admin_request(self, method: str, target: str, body: Any = None) -> Any:
        """A call on the admin socket (as root: the caller has decided it may)."""
        client = self.admin
        if client is None:
            raise ApiError(503, "unavailable", "repfs web has no admin socket")
        return await trio.to_thread.run_sync(lambda: client.request(method, target, body), limiter=self.limiter)

    # --- shares, as the account ---------------------------------------------------------
    async def get_shares(self, request: Request) -> Response:
        keyscope.check(request, None)
        return JSONResponse(await self.control.call("GET", "/v1/me/shares", act_as=_name(request)))

    async def post_share(self, request: Request) -> Response:
        keyscope.check(request, None)
        body = await json_body(request, {"path", "user", "role"}, {"path", "user", "role"})
        answer = await self.control.call("POST", "/v1/me/shares", body, act_as=_name(request))
        return JSONResponse(answer, status_code=201)

    async def delete_share(self, request: Request) -> Response:
        keyscope.check(request, None)
        q = request.query_params
        if "path" not in q or "user" not in q:
            raise ApiError(400, "bad_request", "give ?path=P&user=U")
        body = {"path": q["path"], "user": q["user"]}
        return JSONResponse(await self.control.call("POST", "/v1/me/shares/remove", body, act_as=_name(request)))

    async def get_accounts(self, request: Request) -> Response:
        """?q=PREFIX: accounts to share with (names only, at most 20)."""
        keyscope.check(request, None)
        query = urlencode({"q": request.query_params.get("q", "")})
        return JSONResponse(await self.control.call("GET", f"/v1/me/accounts?{query}", act_as=_name(request)))

    # --- API keys of the account ----------------------------------------------------------
    async def get_keys(self, request: Request) -> Response:
        keyscope.check(request, None)
        return JSONResponse(await self.control.call("GET", "/v1/me/keys", act_as=_name(request)))

    async def post_key(self, request: Request) -> Response:
        keyscope.check(request, None)
        body = await json_body(request, {"paths", "ops", "label", "expires"}, {"paths", "ops"})
        answer = await self.control.call("POST", "/v1/me/keys", body, act_as=_name(request))
        return JSONResponse(answer, status_code=201)

    async def delete_key(self, request: Request) -> Response:
        keyscope.check(request, None)
        key_id = quote(request.path_params["id"], safe="")
        return JSONResponse(await self.control.call("DELETE", f"/v1/me/keys/{key_id}", act_as=_name(request)))

    # --- administrators -----------------------------------------------------------------
    async def get_users(self, request: Request) -> Response:
        return JSONResponse({"users": await self._admin_call(request, "GET", "/v1/users")})

    async def get_user(self, request: Request) -> Response:
        name = quote(request.path_params["name"], safe="")
        return JSONResponse(await self._admin_call(request, "GET", f"/v1/users/{name}"))

    async def post_user(self, request: Request) -> Response:
        body = await json_body(request, {"name", "email", "uid", "create_system_user", "valid_until", "password",
                                         "password_temporary"}, {"name", "email"})  # fmt: skip
        return JSONResponse(await self._admin_call(request, "POST", "/v1/users", body), status_code=201)

    async def patch_user(self, request: Request) -> Response:
        body = await json_body(request, ACCOUNT_FIELDS)
        name = quote(request.path_params["name"], safe="")
        return JSONResponse(await self._admin_call(request, "PATCH", f"/v1/users/{name}", body))

    async def post_user_state(self, request: Request) -> Response:
        name, what = quote(request.path_params["name"], safe=""), request.path_params["what"]
        if what not in ("disable", "enable"):
            raise ApiError(404, "not_found", f"no such endpoint: {request.url.path}")
        return JSONResponse(await self._admin_call(request, "POST", f"/v1/users/{name}/{what}", {}))

    async def get_user_files(self, request: Request) -> Response:
        """An account's files, its namespace walked (paged, for administrators)."""
        await self._admin_call(request, "GET", f"/v1/users/{quote(request.path_params['name'], safe='')}")
        q = request.query_params
        offset, limit = number(q.get("offset"), 0, "offset"), number(q.get("limit"), 1000, "limit")
        if not 1 <= limit <= 10_000:
            raise ApiError(400, "bad_request", "limit must be 1 to 10000")
        found = await self.workers.call(ROOT, _walk, self.tree, request.path_params["name"], offset + limit)
        page = found[offset : offset + limit]
        return JSONResponse({"account": request.path_params["name"], "offset": offset, "count": len(page),
                             "more": len(found) > offset + limit,
                             "files": [{"path": e.path, "size": e.size, "mtime": e.mtime} for e in page]})  # fmt: skip

    async def get_pools(self, request: Request) -> Response:
        return JSONResponse(await self._admin_call(request, "GET", "/v1/pools"))

    async def get_pool_history(self, request: Request) -> Response:
        """?pool=&since=&limit=: the pools' usage samples and state changes (FS_DIR/history.sqlite)."""
        query = {k: v for k, v in request.query_params.items() if k in ("pool", "since", "limit")}
        return JSONResponse(await self._admin_call(request, "GET", f"/v1/history/pools?{urlencode(query)}"))

    async def get_status(self, request: Request) -> Response:
        return JSONResponse(await self._admin_call(request, "GET", "/v1/status"))

    async def get_locks(self, request: Request) -> Response:
        return JSONResponse(await self._admin_call(request, "GET", "/v1/locks"))

    def routes(self, route: Callable[..., Callable[[Request], Awaitable[Response]]]) -> list[Route]:
        r = route
        return [
            Route("/api/v1/shares", r(self.get_shares), methods=["GET"]),
            Route("/api/v1/shares", r(self.post_share), methods=["POST"]),
            Route("/api/v1/shares", r(self.delete_share), methods=["DELETE"]),
            Route("/api/v1/accounts", r(self.get_accounts), methods=["GET"]),
            Route("/api/v1/keys", r(self.get_keys), methods=["GET"]),
            Route("/api/v1/keys", r(self.post_key), methods=["POST"]),
            Route("/api/v1/keys/{id}", r(self.delete_key), methods=["DELETE"]),
            Route("/api/v1/users", r(self.get_users), methods=["GET"]),
            Route("/api/v1/users", r(self.post_user), methods=["POST"]),
            Route("/api/v1/users/{name}", r(self.get_user), methods=["GET"]),
            Route("/api/v1/users/{name}", r(self.patch_user), methods=["PATCH"]),
            Route("/api/v1/users/{name}/files", r(self.get_user_files), methods=["GET"]),
            Route("/api/v1/users/{name}/{what}", r(self.post_user_state), methods=["POST"]),
            Route("/api/v1/pools", r(self.get_pools), methods=["GET"]),
            Route("/api/v1/pools/history", r(self.get_pool_history), methods=["GET"]),
            Route("/api/v1/status", r(self.get_status), methods=["GET"]),
            Route("/api/v1/locks", r(self.get_locks), methods=["GET"]),
        ]


def _name(request: Request) -> str:
    name: str = request.state.account["name"]
    return name




def _walk(tree: files.Tree, name: str, wanted: int) -> list[files.Entry]:
    """The first `wanted` (and one more) files of `/name` in walk order: a folder's own
    files by name, then its folders, each the same way. A page costs the walk up to it."""
    out: list[files.Entry] = []
    todo = [[name]]
    while todo and len(out) < wanted + 1:
        folder = todo.pop()
        listing = tree.listing(files.joined(folder))
        for e in reversed(listing):
            if e.kind == "folder":
                todo.append([*folder, e.name])
        out += [e for e in listing if e.kind != "folder"]
    return out[: wanted + 1]
