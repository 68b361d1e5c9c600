"""Files by content hash over the API (seed 003): `GET /api/v1/files?sha256=HEX` lists the
files with that content the caller may read, `GET /api/v1/by-sha256/HEX` downloads one.
The daemon knows which files have the content and which the account may reach; whether it
may read each is asked of the mount as the account, like every file access of the API."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from repfs.web import files, keyscope
from repfs.web.control import Control
from repfs.web.errors import ApiError

AsCaller = Callable[..., Awaitable[Any]]  # (request, fn, *args): fn run as the caller
Download = Callable[[Request, str], Awaitable[Response]]


class ContentsApi:
    def __init__(self, control: Control, tree: files.Tree, as_caller: AsCaller, download: Download,
                 close: Callable[[int], Awaitable[None]]) -> None:  # fmt: skip
        self.control, self.tree, self.as_caller, self.download, self.close = control, tree, as_caller, download, close

    async def _readable(self, request: Request, sha256: str) -> tuple[list[dict[str, Any]], int]:
        found = await self.control.by_sha256(request.state.account["name"], sha256)
        readable = []
        for match in found["files"]:
            path = str(match["path"]).lstrip("/")
            if not keyscope.allowed(request, "read", path):
                continue
            try:
                fd = await self.as_caller(request, self.tree.open_file, path, os.O_RDONLY)
            except OSError:
                continue  # not readable by the caller (or gone meanwhile)
            await self.close(fd)
            readable.append({"path": files.joined(files.split(path)), "size": match["size"], "mtime": match["mtime"]})
        return readable, int(found["pending"])

    async def get_files(self, request: Request) -> Response:
        sha256 = request.query_params.get("sha256")
        if sha256 is None:
            raise ApiError(400, "bad_request", "give ?sha256=HEX (64 hexadecimal digits); folders are /api/v1/list")
        readable, pending = await self._readable(request, sha256)
        return JSONResponse({"sha256": sha256.lower(), "files": readable, "pending": pending,
                             "complete": pending == 0})  # fmt: skip

    async def get_by_sha256(self, request: Request) -> Response:
        sha256 = request.path_params["hex"]
        readable, pending = await self._readable(request, sha256)
        if not readable:
            if pending:
                raise ApiError(404, "pending", f"no file with that content yet: {pending} files wait for their hash")
            raise ApiError(404, "not_found", "no file with that content that you may read")
        return await self.download(request, readable[0]["path"])

    def routes(self, r: Callable[..., Any]) -> list[Route]:
        return [
            Route("/api/v1/files", r(self.get_files), methods=["GET"]),
            Route("/api/v1/by-sha256/{hex}", r(self.get_by_sha256), methods=["GET"]),
        ]
