"""What the API's routes read from a request: a JSON body with its fields checked, text
fields, numbers in the query. Every bad value is a 400 naming it."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from repfs.web.errors import ApiError

MAX_JSON = 1 << 20


async def json_body(
    request: Request, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_JSON:
        raise ApiError(413, "too_large", "a JSON body takes at most 1 MiB")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    if set(body) - allowed:
        raise ApiError(400, "bad_request", f"unknown field(s) {sorted(set(body) - allowed)}")
    if required - set(body):
        raise ApiError(400, "bad_request", f"missing field(s): {', '.join(sorted(required - set(body)))}")
    return body


def text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"{key} must be text")
    return value


def number(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise ApiError(400, "bad_request", f"{name} must be a number")
    return int(value)
