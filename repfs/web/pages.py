"""The web interface's files: one page (`/`) and its script, style and vendored libraries
(`/ui/...`), read once at start and served from memory. The page is a client of the API and
nothing more: every action it offers is an `/api/v1` call, so it adds no rule of its own.

The libraries (Uppy with tus-js-client for uploads, uPlot for the pool plots) are pinned
and vendored under `static/vendor/` with their licences; `static/vendor/README.md` says
which versions and how they are refreshed. Their paths carry the version, so they are
cached for a year; the page's own files are checked (ETag) at every load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from repfs.web.errors import ApiError

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".md": "text/plain; charset=utf-8",
         ".txt": "text/plain; charset=utf-8"}  # fmt: skip
# no script but ours, no inline script; styles set by script (Uppy's, uPlot's) are not inline CSS
POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; "
          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY"}  # fmt: skip


class Pages:
    def __init__(self, root: Path = STATIC) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in TYPES:
                data = path.read_bytes()
                self.files[path.relative_to(root).as_posix()] = (data, f'"{hashlib.sha256(data).hexdigest()[:20]}"')

    def _answer(self, request: Request, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            raise ApiError(404, "not_found", f"no such page: {request.url.path}")
        data, etag = found
        cache = "public, max-age=31536000, immutable" if name.startswith("vendor/") else "no-cache"
        headers = {**HEADERS, "ETag": etag, "Cache-Control": cache}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=TYPES[Path(name).suffix], headers=headers)

    async def get_index(self, request: Request) -> Response:
        return self._answer(request, "index.html")

    async def get_asset(self, request: Request) -> Response:
        return self._answer(request, request.path_params["path"])

    async def get_icon(self, request: Request) -> Response:
        return self._answer(request, "logo.svg")

    def routes(self, r: Callable[..., Callable[[Request], Awaitable[Response]]]) -> list[Route]:
        return [
            Route("/", r(self.get_index, auth=False), methods=["GET"]),
            Route("/favicon.ico", r(self.get_icon, auth=False), methods=["GET"]),
            Route("/ui/{path:path}", r(self.get_asset, auth=False), methods=["GET"]),
        ]
