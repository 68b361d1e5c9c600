"""The admin socket's account endpoints: a transport over `fs.accountmanager`.

| method | path | body | answer |
|---|---|---|---|
| GET | /v1/users | | 200 [ACCOUNT] |
| POST | /v1/users | {"name", "email", "uid"?, "create_system_user"?, "valid_until"?, "password"?, ...} | 201 ACCOUNT |
| GET | /v1/users/NAME | | 200 ACCOUNT; 404 |
| PATCH | /v1/users/NAME | {"email"?, "valid_until"?, "quota"?, "quota_files"?, "soft"?} | 200 ACCOUNT |
| POST | /v1/users/NAME/disable, /enable | | 200 ACCOUNT |
| PUT | /v1/users/NAME/password | {"password", "temporary"?} | 200 {"name", "password_set"} |
| DELETE | /v1/users/NAME?delete_files=1 | | 200 ACCOUNT; 409 if its namespace holds files |

ACCOUNT is `Account.public()` (no password hash, only `password_set`) with `usage`
({"bytes", "files"}) and `quota` ({"max_bytes", "max_files", "soft_bytes"}; 0: none). A password in a
body is never logged or answered; `password_temporary` (POST) and `temporary` (PUT) mark it to be
changed at the next web sign-in. `valid_until` is `YYYY-MM-DD` or "" for no end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from repfs.admin.http import HttpError, Request, Response, Router, body_size
from repfs.errors import InvalidRequest
from repfs.fs import accounts as acc
from repfs.fs import apikeys, quota
from repfs.fs.accountmanager import AccountManager
from repfs.fs.accounts import AccountError, AccountExists, AccountInvalid, AccountUnknown, NamespaceNotEmpty
from repfs.fs.audit import Audit

Handler = Callable[[Request], Awaitable[Response]]


def mapped(handler: Handler, audit: Audit, op: str | None) -> Handler:
    """Account errors as HTTP statuses; a change (`op`) gives an audit record either way."""

    async def call(request: Request) -> Response:
        result = "ok"
        try:
            return await handler(request)
        except AccountUnknown as exc:
            result = "ENOENT"
            raise HttpError(404, str(exc)) from None
        except AccountInvalid as exc:
            result = "EINVAL"
            raise HttpError(400, str(exc)) from None
        except (AccountExists, NamespaceNotEmpty) as exc:
            result = "EEXIST" if isinstance(exc, AccountExists) else "ENOTEMPTY"
            raise HttpError(409, str(exc)) from None
        except AccountError as exc:  # e.g. a file of the namespace could not be deleted
            result = "EIO"
            raise HttpError(409, str(exc)) from None
        except HttpError as exc:
            result = f"HTTP {exc.status}"
            raise
        except BaseException:
            result = "error"
            raise
        finally:
            if op is not None:
                name = request.params.get("name") or _name_in(request)
                uid = getattr(request.peer, "uid", 0)
                audit.write(uid, op, f"/{name}" if name else None, result)

    return call


def _name_in(request: Request) -> str | None:
    try:
        value = request.json().get("name")
    except HttpError:
        return None
    return value if isinstance(value, str) else None


def body_fields(body: object, allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AccountInvalid("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise AccountInvalid(f"unknown field(s) {sorted(unknown)}; known: {', '.join(sorted(allowed))}")
    missing = required - set(body)
    if missing:
        raise AccountInvalid(f"missing field(s): {', '.join(sorted(missing))}")
    return body


def body_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise AccountInvalid(f"{key} must be a string")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise AccountInvalid(f"{key} must be true or false")
    return value


def _until(body: dict[str, Any]) -> int | None:
    value = body_text(body, "valid_until")
    if value is None:
        return None
    return acc.parse_date(value) if value else 0


def described(manager: AccountManager, account: acc.Account) -> dict[str, Any]:
    """ACCOUNT: the record without its password, with its usage and quota."""
    used, limits = manager.usage(account)
    return {**account.public(), "usage": dataclasses.asdict(used), "quota": dataclasses.asdict(limits)}


def _new_limits(old: quota.Limits, body: dict[str, Any]) -> quota.Limits:
    """The limits a PATCH asks for; what it leaves out stays. `max_size` (the eviction
    size) goes with `evict: "oldest"`, the one policy; `evict: "none"` turns it off."""
    evict = body_text(body, "evict")
    if evict not in (None, "oldest", "none"):
        raise AccountInvalid(f"evict must be 'oldest' or 'none', got {evict!r}")
    max_size = body_size(body, "max_size")
    if max_size and evict != "oldest" and not old.evict_bytes:
        raise AccountInvalid("max_size needs evict: 'oldest' (the files removed first are the oldest ingested)")
    evict_bytes = old.evict_bytes if max_size is None else max_size
    return quota.Limits(
        max_bytes=old.max_bytes if (v := body_size(body, "quota")) is None else v,
        max_files=old.max_files if (f := body_size(body, "quota_files", count=True)) is None else f,
        soft_bytes=old.soft_bytes if (w := body_size(body, "soft")) is None else w,
        evict_bytes=0 if evict == "none" else evict_bytes,
    )


def new_key(manager: AccountManager, name: str, raw: object) -> tuple[apikeys.ApiKey, str]:
    """A key as a request asks for it: {"paths": [..], "ops": [..], "label"?, "expires"?}."""
    body = body_fields(raw, {"paths", "ops", "label", "expires"}, {"paths", "ops"})
    paths, ops = body["paths"], body["ops"]
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        raise AccountInvalid("paths must be a list of folders")
    if not (isinstance(ops, list) and all(isinstance(o, str) for o in ops)):
        raise AccountInvalid(f"ops must be a list of {', '.join(apikeys.OPS)}")
    expires = body_text(body, "expires")
    try:
        return manager.add_key(name, paths, ops, label=body_text(body, "label") or "",
                               expires=acc.parse_date(expires) if expires else 0)  # fmt: skip
    except InvalidRequest as exc:
        raise AccountInvalid(str(exc)) from None


def new_cert(manager: AccountManager, name: str, raw: object) -> dict[str, Any]:
    """A client certificate as a request asks for it: {"public_key": PEM, "days"?, "paths"?,
    "ops"?, "label"?}; the answer is the key record with "cert" and "ca" (PEM)."""
    body = body_fields(raw, {"public_key", "days", "paths", "ops", "label"}, {"public_key"})
    days = body.get("days", 365)
    if not isinstance(days, int) or isinstance(days, bool):
        raise AccountInvalid("days must be a number")
    paths, ops = body.get("paths", ["/"]), body.get("ops", list(apikeys.OPS))
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        raise AccountInvalid("paths must be a list of folders")
    if not (isinstance(ops, list) and all(isinstance(o, str) for o in ops)):
        raise AccountInvalid(f"ops must be a list of {', '.join(apikeys.OPS)}")
    try:
        key, cert, ca = manager.add_cert(name, body_text(body, "public_key") or "", days=days, paths=paths, ops=ops,
                                         label=body_text(body, "label") or "")  # fmt: skip
    except InvalidRequest as exc:
        raise AccountInvalid(str(exc)) from None
    return {**key.public(), "cert": cert, "ca": ca}


def add_routes(router: Router, manager: AccountManager, audit: Audit) -> None:
    async def list_users(request: Request) -> Response:
        return Response.json(200, [described(manager, a) for a in manager.list()])

    async def add_user(request: Request) -> Response:
        body = body_fields(
            request.json(),
            {"name", "email", "uid", "create_system_user", "valid_until", "password", "password_temporary"},
            {"name", "email"},
        )
        uid = body.get("uid")
        if uid is not None and (not isinstance(uid, int) or isinstance(uid, bool)):
            raise AccountInvalid("uid must be a number")
        create = _flag(body, "create_system_user")
        account = await manager.add(
            body_text(body, "name") or "",
            body_text(body, "email") or "",
            uid=uid,
            create_system_user=create,
            valid_until=_until(body) or 0,
            password=body_text(body, "password"),
            password_temporary=_flag(body, "password_temporary"),
        )
        sent = await manager.welcome.send(account.name)
        return Response.json(201, {**described(manager, account), "mail": sent.public()})

    async def show_user(request: Request) -> Response:
        return Response.json(200, described(manager, manager.show(request.params["name"])))

    async def patch_user(request: Request) -> Response:
        limits = {"quota", "quota_files", "soft", "max_size", "evict"}
        body = body_fields(request.json(), {"email", "valid_until"} | limits)
        name = request.params["name"]
        account = manager.update(name, email=body_text(body, "email"), valid_until=_until(body))
        if limits & set(body):
            _, old = manager.usage(account)
            manager.set_limits(name, _new_limits(old, body))
        return Response.json(200, described(manager, account))

    async def disable_user(request: Request) -> Response:
        return Response.json(200, manager.set_disabled(request.params["name"], True).public())

    async def enable_user(request: Request) -> Response:
        return Response.json(200, manager.set_disabled(request.params["name"], False).public())

    async def put_password(request: Request) -> Response:
        body = body_fields(request.json(), {"password", "temporary"}, {"password"})
        await manager.set_password(request.params["name"], body_text(body, "password") or "",
                                   temporary=_flag(body, "temporary"))  # fmt: skip
        return Response.json(200, {"name": request.params["name"], "password_set": True})

    async def remove_user(request: Request) -> Response:
        delete_files = request.query.get("delete_files", "") in ("1", "true", "yes")
        account = await manager.remove(request.params["name"], delete_files=delete_files)
        return Response.json(200, account.public())

    async def list_keys(request: Request) -> Response:
        return Response.json(200, {"keys": [k.public() for k in manager.keys(request.params["name"])]})

    async def add_key(request: Request) -> Response:
        key, token = new_key(manager, request.params["name"], request.json())
        return Response.json(201, {**key.public(), "token": token})

    async def add_cert(request: Request) -> Response:
        return Response.json(201, new_cert(manager, request.params["name"], request.json()))

    async def remove_key(request: Request) -> Response:
        return Response.json(200, manager.remove_key(request.params["name"], request.params["id"]).public())

    router.add("GET", "/v1/users/{name}/keys", mapped(list_keys, audit, None))
    router.add("POST", "/v1/users/{name}/keys", mapped(add_key, audit, "users.keys.add"))
    router.add("DELETE", "/v1/users/{name}/keys/{id}", mapped(remove_key, audit, "users.keys.remove"))
    router.add("POST", "/v1/users/{name}/cert", mapped(add_cert, audit, "users.cert"))
    router.add("GET", "/v1/users", mapped(list_users, audit, None))
    router.add("POST", "/v1/users", mapped(add_user, audit, "users.add"))
    router.add("GET", "/v1/users/{name}", mapped(show_user, audit, None))
    router.add("PATCH", "/v1/users/{name}", mapped(patch_user, audit, "users.set"))
    router.add("DELETE", "/v1/users/{name}", mapped(remove_user, audit, "users.remove"))
    router.add("POST", "/v1/users/{name}/disable", mapped(disable_user, audit, "users.disable"))
    router.add("POST", "/v1/users/{name}/enable", mapped(enable_user, audit, "users.enable"))
    router.add("PUT", "/v1/users/{name}/password", mapped(put_password, audit, "users.passwd"))
