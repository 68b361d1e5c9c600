"""Policy endpoints of the admin socket: legal holds, locks, retention, and what repfs
knows of one path. A transport over repfs.control (holds, locks, retention, info).

| method | path | body | answer |
|---|---|---|---|
| GET | /v1/holds | | 200 {"holds": [HOLD]} |
| POST | /v1/holds | {"path", "reason"?} | 201 HOLD |
| POST | /v1/holds/remove | {"path"} | 200 HOLD |
| GET | /v1/locks | | 200 {"locks": [LOCK]} |
| POST | /v1/locks/break | {"path"} | 200 LOCK |
| GET | /v1/retention | | 200 STATUS: rules, default, next run, last sweep |
| POST | /v1/retention | {"path" or "default": true, "max_age"?, "min_age"?} (seconds) | 200 RULE |
| POST | /v1/retention/clear | {"path" or "default": true} | 200 RULE (the one removed) |
| POST | /v1/retention/run | {"dry_run"?: bool} | 200 {"would_delete", "paths", "held"} or 202 STATUS |
| GET | /v1/info?path=P | | 200 INFO |

Paths are relative to the mount point. Errors as everywhere on the socket: 400, 404, 409.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from repfs.admin.http import Request, Response, Router, peer_uid
from repfs.control import retention
from repfs.control.holds import add_hold, list_holds, remove_hold
from repfs.control.info import info
from repfs.control.locks import break_lock, list_locks
from repfs.errors import InvalidRequest

if TYPE_CHECKING:
    from repfs.stack import Layers


def _fields(body: dict[str, Any], allowed: set[str], hint: str) -> dict[str, Any]:
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest(f"unknown field(s) {sorted(unknown)}; {hint}")
    return body


def _path(body: dict[str, Any], hint: str = "give path (relative to the mount point)") -> str:
    path = body.get("path")
    if not isinstance(path, str):
        raise InvalidRequest(hint)
    return path


def _target(body: dict[str, Any]) -> str | None:
    """A rule's folder, or None for the default of new namespaces."""
    if body.get("default") is True:
        if "path" in body:
            raise InvalidRequest("give path or default, not both")
        return None
    return _path(body, "give path (a folder relative to the mount point, / for all) or default: true")


def _age(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{key} must be a number of seconds (0: none), got {value!r}")
    return value


def add_routes(r: Router, layers: Layers) -> None:
    meta, audit, expirer = layers.meta, layers.audit, layers.expiry

    async def get_holds(request: Request) -> Response:
        return Response.json(200, {"holds": [dataclasses.asdict(h) for h in list_holds(meta)]})

    async def post_hold(request: Request) -> Response:
        body = _fields(request.json(), {"path", "reason"}, "known: path, reason")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidRequest("reason must be text")
        return Response.of(201, add_hold(meta, audit, _path(body), reason, by_uid=peer_uid(request)))

    async def post_hold_remove(request: Request) -> Response:
        body = _fields(request.json(), {"path"}, "known: path")
        return Response.of(200, remove_hold(meta, audit, _path(body), by_uid=peer_uid(request)))

    async def get_locks(request: Request) -> Response:
        return Response.json(200, {"locks": [dataclasses.asdict(lock) for lock in list_locks(meta, layers.locks)]})

    async def post_lock_break(request: Request) -> Response:
        body = _fields(request.json(), {"path"}, "known: path")
        return Response.of(200, break_lock(meta, layers.locks, audit, _path(body), by_uid=peer_uid(request)))

    async def get_retention(request: Request) -> Response:
        return Response.of(200, retention.status(meta, expirer))

    async def post_retention(request: Request) -> Response:
        known = {"path", "default", "max_age", "min_age"}
        body = _fields(request.json(), known, "known: " + ", ".join(sorted(known)))
        target = _target(body)
        max_age, min_age = _age(body, "max_age"), _age(body, "min_age")
        rule = retention.set_rule(
            meta, audit, expirer, target, max_age=max_age, min_age=min_age, by_uid=peer_uid(request)
        )
        return Response.of(200, rule)

    async def post_retention_clear(request: Request) -> Response:
        body = _fields(request.json(), {"path", "default"}, "known: path, default")
        return Response.of(200, retention.clear_rule(meta, audit, expirer, _target(body), by_uid=peer_uid(request)))

    async def post_retention_run(request: Request) -> Response:
        body = _fields(request.json(), {"dry_run"}, "known: dry_run")
        dry = body.get("dry_run", False)
        if not isinstance(dry, bool):
            raise InvalidRequest("dry_run must be true or false")
        if dry:
            return Response.of(200, await retention.dry_run(expirer))
        return Response.of(202, retention.run_now(expirer))

    async def get_info(request: Request) -> Response:
        path = request.query.get("path")
        if path is None:
            raise InvalidRequest("give ?path= (relative to the mount point)")
        return Response.of(200, info(meta, layers.locks, path))

    r.add("GET", "/v1/holds", get_holds)
    r.add("POST", "/v1/holds", post_hold)
    r.add("POST", "/v1/holds/remove", post_hold_remove)
    r.add("GET", "/v1/locks", get_locks)
    r.add("POST", "/v1/locks/break", post_lock_break)
    r.add("GET", "/v1/retention", get_retention)
    r.add("POST", "/v1/retention", post_retention)
    r.add("POST", "/v1/retention/clear", post_retention_clear)
    r.add("POST", "/v1/retention/run", post_retention_run)
    r.add("GET", "/v1/info", get_info)
