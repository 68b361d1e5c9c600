"""The REST/JSON API (`/api/v1`), an ASGI application (Starlette) served by hypercorn.

A transport: it authenticates the request, then hands file work to `files.Tree` run as
the account (`asuser`), and account work to the user socket (`control`). The rules are
the mount's. Errors are JSON `{"error": CODE, "message": TEXT}` with the status of
`errors.status_of`; never a traceback. Every route is in `openapi.DOCUMENT` and
docs/API.md.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from repfs.admin.client import AdminError, Unreachable
from repfs.errors import InvalidArgument
from repfs.web import files, keyscope, openapi
from repfs.web.accounts_api import AccountsApi
from repfs.web.asuser import Who, Workers, groups_of
from repfs.web.bodies import DIGITS, json_body, number, text
from repfs.web.contents import ContentsApi
from repfs.web.control import Control
from repfs.web.errors import ApiError, from_admin, from_os
from repfs.web.links import DownloadLinks
from repfs.web.listen import PeerCerts
from repfs.web.observe import RateLimiter, WebMetrics
from repfs.web.onboarding import Onboarding
from repfs.web.pages import Pages
from repfs.web.sessions import LoginBrake, Sessions
from repfs.web.tus import Tus
from repfs.web.uploads import PARTS_FOLDER, STAGING_PREFIX, Uploads
from repfs.web.welcome import WelcomeApi
from repfs.web.zipstream import ZipWriter

log = logging.getLogger(__name__)

CHUNK = 256 << 10  # bytes a download reads per worker call (each is held, with its TLS copy, per connection)
PAGE = 1000  # entries of a listing by default
MAX_PAGE = 10_000
API_KEY_PREFIX = "rk_"
REFUSED_SIGN_IN = "wrong account name or password, or the account may not sign in"  # one answer for every case
# what a page of another origin may read of an answer (tus needs its headers)
CORS_EXPOSED = ["Location", "Upload-Offset", "Upload-Length", "Upload-Expires", "Tus-Resumable", "Tus-Version",
                "Tus-Extension", "Tus-Max-Size", "ETag", "Content-Range", "Retry-After"]  # fmt: skip
# all a session signed in with a password an administrator set may do (passwords are for
# the web's sign-in only: the mount and API keys do not use them)
TEMPORARY_PASSWORD_ROUTES = frozenset({"/api/v1/me", "/api/v1/me/password"})
RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
UPLOAD_PREFIX = ".repfs-put-"
IN_FLIGHT = (UPLOAD_PREFIX, STAGING_PREFIX)  # this process's own unfinished uploads: not listed


@dataclass(frozen=True)
class WebOptions:
    max_put: int = 1 << 30  # bytes of a simple PUT (resumable uploads are for more)
    max_upload: int = 100 << 30  # bytes of a resumable upload
    cors_origins: tuple[str, ...] = ()
    admin_socket: Path | None = None  # for administrators' routes (None: there are none)
    admin_gid: int | None = None  # the admin group: its members are administrators
    admin_group: str | None = None  # its name as given (the first administrator's is made if missing)
    rate: float = 100.0  # requests a second per token on average (0: no limit)
    burst: int = 200  # requests at once per token


Handler = Callable[[Request], Awaitable[Response]]


class Api:
    def __init__(
        self, tree: files.Tree, control: Control, sessions: Sessions, uploads: Uploads, opts: WebOptions,
        peers: PeerCerts | None = None,
    ) -> None:
        self.tree = tree
        self.peers = peers if peers is not None else PeerCerts()
        self.control = control
        self.sessions = sessions
        self.opts = opts
        self.workers = Workers()
        self.brake = LoginBrake()
        self.metrics = WebMetrics()
        self.limiter = RateLimiter(opts.rate, opts.burst)
        self.tus = Tus(tree, self.workers, uploads, self.metrics, max_size=opts.max_upload)
        self.accounts = AccountsApi(control, tree, self.workers, opts.admin_socket, opts.admin_gid)
        self._db = trio.CapacityLimiter(1)  # the session file: one call at a time
        self.links = DownloadLinks()
        self.onboarding = Onboarding(self.accounts, opts.admin_group)

    # --- plumbing ---------------------------------------------------------------------
    async def db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._db)

    def route(self, handler: Handler, *, auth: bool = True) -> Handler:
        """Errors as JSON with their status; with `auth`, the caller's account first (and
        its rate limit); every answer counted and timed by route."""

        async def call(request: Request) -> Response:
            started = time.monotonic()
            response = await self._answer(handler, request, auth)
            name = request.scope["route"].path if "route" in request.scope else "other"
            self.metrics.requests.labels(name, request.method, str(response.status_code)).inc()
            self.metrics.seconds.labels(name).observe(time.monotonic() - started)
            return response

        return call

    async def _answer(self, handler: Handler, request: Request, auth: bool) -> Response:
        try:
            if auth:
                wait = self.limiter.wait_for(self._credential(request))
                if wait > 0:
                    self.metrics.limited.inc()
                    error = ApiError(429, "rate_limited", f"too many requests with this sign-in: wait {wait:.1f} s")
                    response = error.response()
                    response.headers["Retry-After"] = str(max(1, round(wait)))
                    return response
                request.state.who = await self._who(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except OSError as exc:
            return from_os(exc).response()
        except InvalidArgument as exc:
            return ApiError(400, "bad_request", str(exc)).response()
        except AdminError as exc:
            return from_admin(exc).response()
        except Unreachable as exc:
            return ApiError(503, "unavailable", f"the filesystem does not answer: {exc}").response()
        except ClientDisconnect:
            return ApiError(400, "bad_request", "the client went away before the body was whole").response()

    def _credential(self, request: Request) -> str:
        return self._proof(request)[1]

    def _proof(self, request: Request) -> tuple[str, str]:
        """What the caller signs in with: ("token", its bearer token), else ("cert", its
        client certificate)."""
        if "authorization" not in request.headers:
            cert = self.peers.of(request.scope.get("client"))
            if cert is not None:
                return "cert", cert
        return "token", self._token(request)

    def _token(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "sign in: POST /api/v1/token, then send Authorization: Bearer TOKEN")
        return token.strip()

    async def _who(self, request: Request, proof: tuple[str, str] | None = None) -> Who:
        """The caller: a bearer token (a session or an API key), else the client certificate
        of the TLS connection (or `proof`, one of those kept by a download link); the account
        is asked for at every request, so a revoked key, a disabled account or a changed
        password counts at once."""
        request.state.key = None
        kind, token = proof or self._proof(request)
        if kind == "cert":
            return await self._by_key(request, self.control.check_cert, token)
        if token.startswith(API_KEY_PREFIX):
            return await self._by_key(request, self.control.check_key, token)
        session = await self.db_call(self.sessions.get, token)
        if session is None:
            raise ApiError(401, "unauthorized", "the token is not valid (expired, or signed out): sign in again")
        try:
            account = await self.control.me(session.account)
        except AdminError as exc:
            if exc.status in (403, 404):  # disabled, expired or removed: the session ends
                await self.db_call(self.sessions.close, token)
                raise ApiError(401, "unauthorized", exc.message) from None
            raise
        if account.get("password_stamp") != session.stamp:
            await self.db_call(self.sessions.close, token)
            raise ApiError(401, "unauthorized", "the password changed since this sign-in: sign in again")
        if account.get("password_temporary") and request.url.path not in TEMPORARY_PASSWORD_ROUTES:
            raise ApiError(403, "password_change_required",
                           "the password was set by an administrator: change it first (PUT /api/v1/me/password)")
        request.state.account = account
        return await self._person(account)

    async def _by_key(self, request: Request, check: Callable[[str], Awaitable[dict[str, Any]]], proof: str) -> Who:
        try:
            found = await check(proof)
        except AdminError as exc:
            if exc.status == 403:
                raise ApiError(401, "unauthorized", exc.message) from None
            raise
        account, request.state.key = found["account"], found["key"]
        request.state.account = account
        return await self._person(account)

    async def _person(self, account: dict[str, Any]) -> Who:
        """Who does the file work of `account`: its uid, gid and the host's groups of it
        (looked up off the event loop: NSS may ask a directory server)."""
        name, gid = str(account["name"]), int(account["gid"])
        groups = await trio.to_thread.run_sync(groups_of, name, gid, limiter=self.workers.limiter)
        return Who(name, int(account["uid"]), gid, groups)

    async def _as(self, request: Request, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.workers.call(request.state.who, fn, *args)

    # --- sessions ---------------------------------------------------------------------
    async def post_token(self, request: Request) -> Response:
        body = await json_body(request, {"login", "password"}, {"login", "password"})
        login, password = text(body, "login", longest=320), text(body, "password", longest=1024)
        account = await self._checked(login, password)
        token, session = await self.db_call(self.sessions.open, account["name"], account["password_stamp"])
        log.info("API sign-in: %s", account["name"])
        return JSONResponse({"token": token, "expires": session.expires, "account": _public(account)}, status_code=201)

    async def _checked(self, login: str, password: str) -> dict[str, Any]:
        """The password check behind the brake: the attempt counts before it is made (so
        attempts at once cannot pass it together), and is forgiven when it succeeds."""
        wait = self.brake.wait(login)
        if wait == float("inf"):
            raise ApiError(429, "locked_out", "too many failed sign-ins for this name: try again later")
        await trio.sleep(wait)  # pacing failed guesses, not synchronisation
        fails = self.brake.failed(login)
        try:
            account = await self.control.login(login, password)
        except AdminError as exc:
            if exc.status == 403:
                self.metrics.failed_logins.inc()
                log.warning("API sign-in refused for %r (%d in a row): %s", login, fails, exc.message)
                raise ApiError(401, "unauthorized", REFUSED_SIGN_IN) from None
            raise
        self.brake.succeeded(login)
        return account

    async def delete_token(self, request: Request) -> Response:
        await self.db_call(self.sessions.close, self._token(request))
        return Response(status_code=204)

    async def get_me(self, request: Request) -> Response:
        account = request.state.account
        usage = await self.control.usage(account["name"])
        return JSONResponse({**_public(account), **usage, "admin": self.accounts.is_admin(request)})

    async def put_password(self, request: Request) -> Response:
        keyscope.check(request, None)
        body = await json_body(request, {"old_password", "password"}, {"old_password", "password"})
        name = request.state.account["name"]
        try:
            await self._checked(name, text(body, "old_password", longest=1024))
        except ApiError as exc:
            if exc.status == 401:
                raise ApiError(403, "forbidden", "the current password is not right") from None
            raise
        await self.control.set_password(name, None, text(body, "password"))
        await self.db_call(self.sessions.close_all, name)  # every session ends, this one too
        return JSONResponse({"name": name, "password_set": True})

    # --- files ------------------------------------------------------------------------
    async def get_stat(self, request: Request) -> Response:
        keyscope.check(request, "read", request.path_params["path"])
        entry = await self._as(request, self.tree.stat, request.path_params["path"])
        return JSONResponse(_entry(entry))

    async def get_list(self, request: Request) -> Response:
        q = request.query_params
        offset, limit = number(q.get("offset"), 0, "offset"), number(q.get("limit"), PAGE, "limit")
        if limit < 1 or limit > MAX_PAGE:
            raise ApiError(400, "bad_request", f"limit must be 1 to {MAX_PAGE}")
        order = q.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ApiError(400, "bad_request", "order must be asc or desc")
        path = request.path_params.get("path", "")
        keyscope.check(request, "read", path)
        total, page = await self._as(request, lambda: self.tree.page(
            path, sort=q.get("sort", "name"), reverse=order == "desc", offset=offset, limit=limit, hidden=_in_flight))
        writable = await self._as(request, self.tree.writable, path)
        return JSONResponse({"path": files.joined(files.split(path)), "total": total, "offset": offset,
                             "writable": writable, "entries": [_entry(e) for e in page]})  # fmt: skip

    async def get_file(self, request: Request) -> Response:
        return await self.download(request, request.path_params["path"])

    async def download(self, request: Request, path: str) -> Response:
        """The file at `path` as the caller reads it: streamed, with Range and ETag."""
        keyscope.check(request, "read", path)
        fd = await self._as(request, self.tree.open_file, path, os.O_RDONLY)
        try:
            st = await self._as(request, os.fstat, fd)
            entry = files.Entry("", path, "file", st.st_size, st.st_mtime, "", st.st_uid, st.st_gid)
            headers = {"ETag": entry.etag, "Accept-Ranges": "bytes", "Last-Modified": _http_date(st.st_mtime)}
            if request.headers.get("if-none-match") == entry.etag:
                await self.workers.close(fd)
                return Response(status_code=304, headers=headers)
            start, length, status = 0, st.st_size, 200
            wanted = request.headers.get("range")
            if wanted and request.headers.get("if-range", entry.etag) == entry.etag:
                start, length = _range(wanted, st.st_size)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{st.st_size}"
            headers["Content-Length"] = str(length)
        except BaseException:
            await self.workers.close(fd)
            raise
        name = files.split(path)[-1]
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(name)}"
        return StreamingResponse(self._chunks(fd, start, length), status_code=status, headers=headers,
                                 media_type="application/octet-stream")  # fmt: skip

    async def _chunks(self, fd: int, start: int, length: int) -> AsyncIterator[bytes]:
        try:
            pos, end = start, start + length
            while pos < end:
                data = await trio.to_thread.run_sync(os.pread, fd, min(CHUNK, end - pos), pos,
                                                     limiter=self.workers.limiter)  # fmt: skip
                if not data:
                    return
                pos += len(data)
                self.metrics.bytes_out.inc(len(data))
                yield data
        finally:
            await self.workers.close(fd)

    async def get_zip(self, request: Request) -> Response:
        """GET /api/v1/zip?path=A&path=B: the files and folders, as one zip."""
        paths = request.query_params.getlist("path")
        await self._readable(request, paths)
        return await self.zip_of(request, paths, request.query_params.get("name", "repfs.zip"))

    async def _readable(self, request: Request, paths: list[str]) -> list[files.Entry]:
        """What `paths` are (a missing one is 404 before anything is sent)."""
        if not paths:
            raise ApiError(400, "bad_request", "give the files and folders: ?path=A&path=B ...")
        if len(paths) > 1000:
            raise ApiError(400, "bad_request", "at most 1000 paths in one zip")
        found = []
        for path in paths:
            keyscope.check(request, "read", path)
            found.append(await self._as(request, self.tree.stat, path))
        return found

    async def post_download(self, request: Request) -> Response:
        """A one-time link (`links`) to one file, or to one zip of files and folders."""
        body = await json_body(request, {"paths", "name"}, {"paths"})
        paths = body["paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ApiError(400, "bad_request", "paths is a list of paths")
        found = await self._readable(request, paths)
        zipped = len(found) != 1 or found[0].kind != "file"
        name = text(body, "name", longest=255) if "name" in body else "repfs.zip"
        secret, expires = self.links.make(self._proof(request), tuple(paths), name, zipped=zipped)
        return JSONResponse({"url": f"/api/v1/downloads/{secret}", "expires": expires, "zip": zipped},
                            status_code=201)  # fmt: skip

    async def get_download(self, request: Request) -> Response:
        link = self.links.take(request.path_params["secret"])
        if link is None:
            raise ApiError(404, "not_found", "this download link is used up or expired: ask for a new one")
        request.state.who = await self._who(request, link.proof)
        if not link.zipped:
            return await self.download(request, link.paths[0])
        await self._readable(request, list(link.paths))
        return await self.zip_of(request, list(link.paths), link.name)

    async def zip_of(self, request: Request, paths: list[str], name: str) -> Response:
        writer = ZipWriter(self.tree, paths)
        who = request.state.who

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    data = await self.workers.call(who, writer.step)
                    if data:
                        self.metrics.bytes_out.inc(len(data))
                        yield data
                    elif writer.done:
                        return
            except OSError as exc:  # too late for a status: the zip ends short, and the log says why
                log.warning("zip for %s cut short: %s", who.name, exc)
            finally:
                writer.abandon()

        headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}"}
        return StreamingResponse(body(), media_type="application/zip", headers=headers)

    async def put_file(self, request: Request) -> Response:
        path = request.path_params["path"]
        keyscope.check(request, "write", path)
        parts = files.split(path)
        if not parts:
            raise ApiError(409, "conflict", "the root is a folder")
        declared = request.headers.get("content-length")
        if declared is not None and DIGITS.fullmatch(declared) and int(declared) > self.opts.max_put:
            raise ApiError(413, "too_large", f"a simple PUT takes at most {self.opts.max_put} bytes")
        existed = await self._as(request, _exists, self.tree, path)
        temp = files.joined([*parts[:-1], f"{UPLOAD_PREFIX}{os.urandom(8).hex()}"])
        fd = await self._as(request, self.tree.open_file, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        written = 0
        pending = bytearray()  # written 256 KiB at a time, not piece by piece as it arrives
        try:
            try:
                async for chunk in request.stream():
                    written += len(chunk)
                    self.metrics.bytes_in.inc(len(chunk))
                    if written > self.opts.max_put:
                        raise ApiError(413, "too_large", f"a simple PUT takes at most {self.opts.max_put} bytes")
                    pending += chunk
                    if len(pending) >= files.WRITE_BATCH:
                        await self._as(request, files.write_all, fd, pending)
                        pending.clear()
                if pending:
                    await self._as(request, files.write_all, fd, pending)
                await self._as(request, os.fsync, fd)
            finally:
                await self.workers.close(fd)
            await self._as(request, self.tree.replace, temp, path)
        except BaseException:
            with trio.CancelScope(shield=True), contextlib.suppress(OSError):
                await self._as(request, self.tree.delete, temp)
            raise
        entry = await self._as(request, self.tree.stat, path)
        return JSONResponse(_entry(entry), status_code=200 if existed else 201)

    async def post_folder(self, request: Request) -> Response:
        keyscope.check(request, "write", request.path_params["path"])
        entry = await self._as(request, self.tree.mkdir, request.path_params["path"])
        return JSONResponse(_entry(entry), status_code=201)

    async def post_move(self, request: Request) -> Response:
        body = await json_body(request, {"from", "to", "replace"}, {"from", "to"})
        replace = body.get("replace", False)
        if not isinstance(replace, bool):
            raise ApiError(400, "bad_request", "replace must be true or false")
        keyscope.check(request, "write", text(body, "from"), text(body, "to"))
        entry = await self._as(request, lambda: self.tree.move(text(body, "from"), text(body, "to"), replace=replace))
        return JSONResponse(_entry(entry))

    async def delete_file(self, request: Request) -> Response:
        keyscope.check(request, "delete", request.path_params["path"])
        await self._as(request, self.tree.delete, request.path_params["path"])
        return Response(status_code=204)

    async def get_info(self, request: Request) -> Response:
        keyscope.check(request, "read", request.path_params["path"])
        info = await self.control.info(request.state.account["name"], request.path_params["path"])
        return JSONResponse(info)

    # --- the rest ---------------------------------------------------------------------
    async def get_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def get_openapi(self, request: Request) -> Response:
        return JSONResponse(openapi.DOCUMENT)

    def app(self) -> Starlette:
        r = self.route
        routes = [
            Route("/api/v1/health", r(self.get_health, auth=False), methods=["GET"]),
            Route("/api/v1/openapi.json", r(self.get_openapi, auth=False), methods=["GET"]),
            Route("/api/v1/token", r(self.post_token, auth=False), methods=["POST"]),
            Route("/api/v1/token", r(self.delete_token, auth=False), methods=["DELETE"]),
            Route("/api/v1/me", r(self.get_me), methods=["GET"]),
            Route("/api/v1/me/password", r(self.put_password), methods=["PUT"]),
            Route("/api/v1/list", r(self.get_list), methods=["GET"]),
            Route("/api/v1/list/{path:path}", r(self.get_list), methods=["GET"]),
            Route("/api/v1/stat/{path:path}", r(self.get_stat), methods=["GET"]),
            Route("/api/v1/info/{path:path}", r(self.get_info), methods=["GET"]),
            Route("/api/v1/files/{path:path}", r(self.get_file), methods=["GET"]),
            Route("/api/v1/files/{path:path}", r(self.put_file), methods=["PUT"]),
            Route("/api/v1/files/{path:path}", r(self.delete_file), methods=["DELETE"]),
            Route("/api/v1/folders/{path:path}", r(self.post_folder), methods=["POST"]),
            Route("/api/v1/move", r(self.post_move), methods=["POST"]),
            Route("/api/v1/zip", r(self.get_zip), methods=["GET"]),
            Route("/api/v1/downloads", r(self.post_download), methods=["POST"]),
            Route("/api/v1/downloads/{secret}", r(self.get_download, auth=False), methods=["GET"]),
            *self.tus.routes(r),
            *self.accounts.routes(r),
            *WelcomeApi(self.control).routes(r),
            *self.onboarding.routes(r),
            *Pages().routes(r),
            *ContentsApi(self.control, self.tree, self._as, self.download, self.workers.close).routes(r),
        ]
        middleware = []
        if self.opts.cors_origins:
            middleware.append(Middleware(CORSMiddleware, allow_origins=list(self.opts.cors_origins),
                                         allow_methods=["*"], allow_headers=["*"], expose_headers=CORS_EXPOSED,
                                         max_age=600))  # fmt: skip
        app = Starlette(routes=routes, middleware=middleware)

        async def not_found(request: Request, exc: Exception) -> Response:
            code = getattr(exc, "status_code", 404)
            name = "method_not_allowed" if code == 405 else "not_found"
            return ApiError(code, name, f"no such endpoint: {request.method} {request.url.path}").response()

        app.add_exception_handler(404, not_found)
        app.add_exception_handler(405, not_found)
        return app


# --- helpers ----------------------------------------------------------------------------
def _public(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k != "password_stamp"}


def _entry(e: files.Entry) -> dict[str, Any]:
    return {**asdict(e), "etag": e.etag}


def _range(header: str, size: int) -> tuple[int, int]:
    """(start, length) of a single byte range; 416 when it cannot be served."""
    m = RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise ApiError(416, "range_not_satisfiable", "one range: bytes=START-END, bytes=START- or bytes=-LAST")
    if not m.group(1):
        length = min(int(m.group(2)), size)
        if length == 0:
            raise ApiError(416, "range_not_satisfiable", f"the file has {size} bytes")
        return size - length, length
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise ApiError(416, "range_not_satisfiable", f"the file has {size} bytes")
    return start, end - start + 1


def _http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _quote(name: str) -> str:
    return quote(name, safe="")


def _in_flight(name: str) -> bool:
    """This process's own unfinished uploads: not listed."""
    return name.startswith(IN_FLIGHT) or name == PARTS_FOLDER


def _exists(tree: files.Tree, path: str) -> bool:
    try:
        tree.stat(path)
    except FileNotFoundError:
        return False
    return True
