"""Share endpoints, on the admin socket (as root) and on the user socket (as the caller's
account): a transport over `fs.sharemanager`.

Admin socket:

| method | path | body | answer |
|---|---|---|---|
| GET | /v1/shares[?path=P \\| ?user=U] | | 200 {"shares": [SHARE]}: all, those that apply to P, or those U was given |
| POST | /v1/shares | {"path", "user", "role"} | 201 SHARE |
| POST | /v1/shares/remove | {"path", "user"} | 200 SHARE |

User socket (the caller's account decides, as on the mount):

| GET | /v1/me/shares | | 200 {"mine": [SHARE], "given": [SHARE]} |
| POST | /v1/me/shares | {"path", "user", "role"} | 201 SHARE: on what it owns or is master of |
| POST | /v1/me/shares/remove | {"path", "user"} | 200 SHARE |

SHARE is {"path", "user", "role", "by", "since"}. 400 bad input, 403 not allowed,
404 no such path, account or share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from repfs.admin.http import HttpError, Request, Response, Router
from repfs.admin.users_api import body_fields, body_text
from repfs.errors import AccessDenied, InvalidArgument, NotADirectory, NotFound, NotPermitted
from repfs.fs.accounts import AccountInvalid, AccountRefused, AccountUnknown
from repfs.fs.sharemanager import ShareInfo, ShareManager

Handler = Callable[[Request], Awaitable[Response]]
Acting = Callable[[Request], int]  # the uid a request acts as


def _mapped(handler: Handler) -> Handler:
    async def call(request: Request) -> Response:
        try:
            return await handler(request)
        except (NotFound, NotADirectory, AccountUnknown) as exc:
            raise HttpError(404, str(exc)) from None
        except (InvalidArgument, AccountInvalid) as exc:
            raise HttpError(400, str(exc)) from None
        except (AccessDenied, NotPermitted, AccountRefused) as exc:
            raise HttpError(403, str(exc)) from None

    return call


def _json(shares: list[ShareInfo]) -> list[dict[str, object]]:
    return [dataclasses.asdict(s) for s in shares]


def _change(request: Request, *, with_role: bool) -> tuple[str, str, str]:
    allowed = {"path", "user", "role"} if with_role else {"path", "user"}
    body = body_fields(request.json(), allowed, allowed)
    return body_text(body, "path") or "", body_text(body, "user") or "", body_text(body, "role") or ""


def add_routes(router: Router, manager: ShareManager, acting: Acting, *, prefix: str) -> None:
    """The changes at PREFIX/shares and PREFIX/shares/remove, made as `acting(request)`."""

    async def add(request: Request) -> Response:
        path, user, role = _change(request, with_role=True)
        return Response.json(201, dataclasses.asdict(await manager.add(path, user, role, by_uid=acting(request))))

    async def remove(request: Request) -> Response:
        path, user, _ = _change(request, with_role=False)
        return Response.json(200, dataclasses.asdict(await manager.remove(path, user, by_uid=acting(request))))

    router.add("POST", f"{prefix}/shares", _mapped(add))
    router.add("POST", f"{prefix}/shares/remove", _mapped(remove))


def add_admin_routes(router: Router, manager: ShareManager) -> None:
    async def listed(request: Request) -> Response:
        query = request.query
        if "path" in query:
            found = manager.on_path(query["path"])
        elif "user" in query:
            found = manager.given_to(query["user"])
        else:
            found = manager.every()
        return Response.json(200, {"shares": _json(found)})

    router.add("GET", "/v1/shares", _mapped(listed))
    add_routes(router, manager, lambda request: 0, prefix="/v1")


def add_user_routes(router: Router, manager: ShareManager, acting: Acting) -> None:
    async def mine(request: Request) -> Response:
        made, given = manager.mine(acting(request))
        return Response.json(200, {"mine": _json(made), "given": _json(given)})

    router.add("GET", "/v1/me/shares", _mapped(mine))
    add_routes(router, manager, acting, prefix="/v1/me")
