"""What an API key may do: the one check every route makes before its work."""

from __future__ import annotations

from starlette.requests import Request

from repfs.fs.apikeys import ApiKey
from repfs.web import files
from repfs.web.errors import ApiError


def allowed(request: Request, op: str, path: str) -> bool:
    """Whether the caller may do `op` on `path` as far as its API key goes (no key: yes)."""
    try:
        check(request, op, path)
    except ApiError:
        return False
    return True


def check(request: Request, op: str | None, *paths: str) -> None:
    """An API key may do `op` on `paths` only (None: nothing but a signed-in person may);
    a signed-in person is not limited here (the mount decides)."""
    key = getattr(request.state, "key", None)
    if key is None:
        return
    if op is None:
        raise ApiError(403, "forbidden", "an API key may not do this: sign in as the account")
    scope = ApiKey(**{**key, "digest": ""})  # as the daemon answered it: its secret stays there
    for path in paths:
        where = files.joined(files.split(path))
        if not scope.allows(op, where):
            raise ApiError(403, "forbidden", f"the API key {key['id']} may not {op} {where}")
