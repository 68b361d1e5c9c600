"""What the API's routes read from a request: a JSON body with its fields checked, text
fields, numbers in the query. Every bad value is a 400 naming it."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from repfs.web.errors import ApiError

MAX_JSON = 1 << 20
DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes "²"), at most 10**18


async def json_body(
    request: Request, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared and (not DIGITS.fullmatch(declared) or int(declared) > MAX_JSON):
        raise ApiError(413, "too_large", "a JSON body takes at most 1 MiB")
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it comes: never more than the limit in memory
        size += len(chunk)
        if size > MAX_JSON:
            raise ApiError(413, "too_large", "a JSON body takes at most 1 MiB")
        chunks.append(chunk)
    raw = b"".join(chunks)
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


def text(body: dict[str, Any], key: str, *, longest: int = 4096) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"{key} must be text")
    if len(value) > longest:
        raise ApiError(400, "bad_request", f"{key} is longer than {longest} characters")
    return value


def number(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not DIGITS.fullmatch(value):
        raise ApiError(400, "bad_request", f"{name} must be a number")
    return int(value)
