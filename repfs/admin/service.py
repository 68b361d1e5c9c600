"""The admin API of a running mount (HTTP/1.1 + JSON on a Unix socket) and its metrics
endpoint: endpoints, what each answers, and the service that serves them.

Every endpoint is listed in docs/ADMIN.md. A transport: requests are parsed here and
handed to the control plane (`repfs.control`), whose typed results go out as JSON. Errors
are JSON {"error": message}: 400 bad input, 403 not an administrator, 404 unknown pool or
endpoint, 405 wrong method, 409 refused (e.g. removing a pool that holds the only copy of
a block), 503 a pool that does not answer, 500 a bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from repfs import __version__
from repfs.admin.auth import Gate, bind_socket, remove_socket, resolve_group, user_socket_path
from repfs.admin.http import HttpError, HttpServer, Request, Response, Router, body_size
from repfs.admin.mail_api import add_routes as add_mail_routes
from repfs.admin.metrics import Metrics
from repfs.admin.policy_api import add_routes as add_policy_routes
from repfs.admin.shares_api import add_admin_routes as add_share_routes
from repfs.admin.user_socket import serve_user_socket
from repfs.admin.users_api import add_routes as add_user_routes
from repfs.admin.webconfig import REALM, BasicAuth, TlsContexts, TlsListener, WebConfig
from repfs.config import parse_ratio
from repfs.control import status
from repfs.control.keys import change_secret
from repfs.control.pools import PoolManager, spec_from_request
from repfs.control.scrub import OnlineScrub
from repfs.errors import (
    ConfigError,
    InvalidRequest,
    NotADirectory,
    NotFound,
    PoolNotAnswering,
    RequestRefused,
    SetupError,
    UnknownName,
    WrongPassphrase,
)
from repfs.fs.check import check as check_path

if TYPE_CHECKING:
    from repfs.stack import Layers

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"


@dataclass(frozen=True)
class AdminOptions:
    socket: Path | None = None  # None: FS_DIR/admin.sock
    group: str | None = None  # None: repfs-admin if it exists
    metrics: tuple[str, int] | None = None  # (address, port) or off
    metrics_web: WebConfig | None = None  # TLS and basic auth of the metrics endpoint
    enabled: bool = True
    user_socket: Path | None = None  # None: auth.user_socket_path(FS_DIR)
    user_socket_enabled: bool = True


def parse_address(text: str) -> tuple[str, int]:
    """`ADDR:PORT`, `[V6]:PORT` or `:PORT` (all addresses) → (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--metrics {text!r} is not ADDR:PORT (e.g. 127.0.0.1:9108)")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number, got {value!r}")
    return float(value)


def _ratio(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        return parse_ratio(value, key)
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None


class Daemon:
    """A mounted filesystem as the admin API and the metrics see it."""

    def __init__(self, layers: Layers, mountpoint: Path, options: AdminOptions, metrics: Metrics) -> None:
        self.layers = layers
        self.mountpoint = mountpoint
        self.options = options
        self.metrics = metrics
        self.pools: PoolManager = layers.pools
        self.scrub = OnlineScrub(layers.meta, layers.repairer)
        self.started = time.time()
        self.socket_path = options.socket or layers.opened.paths.root / SOCKET_NAME
        self.admin: HttpServer | None = None
        web = options.metrics_web
        self.metrics_auth = BasicAuth(web.users) if web is not None and web.users else None
        self._nursery: trio.Nursery | None = None
        self.router = self._routes()
        metrics.bind(self)

    def admin_requests(self) -> int:
        return self.admin.requests if self.admin is not None else 0

    # --- the service ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the admin socket (and metrics) until cancelled; the socket is removed after."""
        opts = self.options
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            links: list[Path] = []
            ino: int | None = None
            if opts.enabled:
                gid = resolve_group(opts.group)
                sock = bind_socket(self.socket_path, gid)
                ino = self.socket_path.lstat().st_ino
                links = self._link()
                gate = Gate(gid)
                self.admin = HttpServer(self._app, identify=gate.identify, name="admin socket")
                await nursery.start(self.admin.serve, [trio.SocketListener(sock)])
                log.info("admin socket at %s (group %s)", self.socket_path, gid if gid is not None else "none")
            if opts.metrics is not None:
                host, port = opts.metrics
                try:
                    listeners = await trio.open_tcp_listeners(port, host=host)
                except OSError as exc:
                    raise SetupError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
                web = opts.metrics_web
                served: list[trio.abc.Listener[Any]] = list(listeners)
                if web is not None and web.tls is not None:
                    contexts = TlsContexts(web.tls)
                    served = [TlsListener(listener, contexts) for listener in listeners]
                server = HttpServer(self._metrics_app, name="metrics", max_body=0)
                await nursery.start(server.serve, served)
                scheme = "https" if web is not None and web.tls is not None else "http"
                users = f", basic auth for {len(web.users)} user(s)" if web is not None and web.users else ""
                log.info("metrics at %s://%s:%d/metrics%s", scheme, host, port, users)
            if opts.user_socket_enabled:
                where = opts.user_socket or user_socket_path(self.layers.opened.paths.root)
                explicit = opts.user_socket is not None
                await nursery.start(partial(serve_user_socket, self.layers, where, explicit=explicit))
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                if opts.enabled:
                    remove_socket(self.socket_path, ino)
                    for link in links:
                        with contextlib.suppress(OSError):
                            if link.is_symlink() and Path(os.readlink(link)) == self.socket_path:
                                link.unlink()

    def _link(self) -> list[Path]:
        """FS_DIR/admin.sock leads to the socket when it lives elsewhere (repfs-admin -m finds it)."""
        default = self.layers.opened.paths.root / SOCKET_NAME
        if default == self.socket_path:
            return []
        with contextlib.suppress(FileNotFoundError):
            if default.is_symlink() or default.is_socket():
                default.unlink()
        try:
            default.symlink_to(self.socket_path)
        except OSError as exc:
            log.warning("cannot link %s to the admin socket: %s", default, exc.strerror)
            return []
        return [default]

    async def _metrics_app(self, request: Request) -> Response:
        auth = self.metrics_auth
        if auth is not None and await auth.check(request.headers.get("authorization")) is None:
            return Response(401, b"401 Unauthorized: this endpoint needs a user name and password\n", "text/plain",
                            headers=(("WWW-Authenticate", REALM),))  # fmt: skip
        if request.method != "GET":
            raise HttpError(405, "only GET is served here")
        if request.path == "/metrics":
            body, content_type, encoding = self.metrics.render(
                request.headers.get("accept", ""), request.headers.get("accept-encoding", "")
            )
            headers = (("Content-Encoding", encoding), ("Vary", "Accept-Encoding")) if encoding else ()
            return Response(200, body, content_type, headers=headers)
        if request.path == "/":
            return Response(200, b"repfs metrics: see /metrics\n", "text/plain")
        raise HttpError(404, f"no such endpoint: {request.path}")

    async def _app(self, request: Request) -> Response:
        try:
            return await self.router(request)
        except UnknownName as exc:
            raise HttpError(404, str(exc)) from None
        except InvalidRequest as exc:
            raise HttpError(400, str(exc)) from None
        except RequestRefused as exc:
            raise HttpError(409, str(exc)) from None
        except PoolNotAnswering as exc:
            raise HttpError(503, str(exc)) from None

    def _routes(self) -> Router:
        r = Router()
        r.add("GET", "/v1/health", self.get_health)
        r.add("GET", "/v1/status", self.get_status)
        r.add("GET", "/v1/pools", self.get_pools)
        r.add("GET", "/v1/history/pools", self.get_pool_history)
        r.add("POST", "/v1/pools", self.post_pool)
        r.add("GET", "/v1/pools/{name}", self.get_pool)
        r.add("PATCH", "/v1/pools/{name}", self.patch_pool)
        r.add("DELETE", "/v1/pools/{name}", self.delete_pool)
        r.add("POST", "/v1/pools/{name}/drain", self.post_drain)
        r.add("POST", "/v1/pools/{name}/undrain", self.post_undrain)
        r.add("POST", "/v1/pools/{name}/clear", self.post_clear)
        r.add("POST", "/v1/check", self.post_check)
        r.add("PATCH", "/v1/config", self.patch_config)
        r.add("POST", "/v1/pools/{name}/offline", self.post_offline)
        r.add("POST", "/v1/pools/{name}/online", self.post_online)
        r.add("GET", "/v1/repair", self.get_repair)
        r.add("GET", "/v1/scrub", self.get_scrub)
        r.add("POST", "/v1/scrub", self.post_scrub)
        r.add("DELETE", "/v1/scrub", self.delete_scrub)
        r.add("POST", "/v1/keys/passwd", self.post_passwd)
        add_policy_routes(r, self.layers)
        add_user_routes(r, self.layers.accounts, self.layers.audit)
        add_mail_routes(r, self.layers.accounts, self.layers.audit)
        add_share_routes(r, self.layers.shares)
        return r

    # --- what the endpoints say --------------------------------------------------------------

    def pool_info(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(status.pool_status(self.layers, self.pools, name))

    def repair_info(self) -> dict[str, Any]:
        return dataclasses.asdict(status.repair_status(self.layers))

    async def get_health(self, request: Request) -> Response:
        return Response.json(200, {"ok": True, "pid": os.getpid(), "mountpoint": str(self.mountpoint)})

    async def get_status(self, request: Request) -> Response:
        await self.layers.accounts.check_host()  # fresh for the operator who asks
        snapshot = status.take(self.layers).as_json()
        snapshot.pop("blocks")
        snapshot.pop("scrub_finished_ns")
        head = {
            "version": __version__,
            "fs_uuid": snapshot.pop("fs_uuid"),
            "fs_dir": snapshot.pop("fs_dir"),
            "mountpoint": str(self.mountpoint),
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started, 1),
        }
        return Response.json(200, {**head, **snapshot, "scrub": dataclasses.asdict(self.scrub.progress())})

    async def get_pools(self, request: Request) -> Response:
        return Response.json(200, {"pools": [self.pool_info(n) for n in self.layers.poolset.pool_names]})

    async def get_pool_history(self, request: Request) -> Response:
        """?pool=NAME&since=UNIX&limit=N: usage samples and state changes, oldest first."""
        q = request.query
        pool = q.get("pool") or None
        try:
            since = float(q.get("since", "0"))
            limit = int(q.get("limit", "10000"))
        except ValueError:
            raise HttpError(400, "since is a unix time and limit a number") from None
        if pool is not None and pool not in self.layers.poolset.pool_names:
            raise HttpError(404, f"no pool named {pool!r}")
        if not 1 <= limit <= 100_000:
            raise HttpError(400, "limit must be 1 to 100000")
        return Response.json(200, await self.layers.history.query(pool, since, limit))

    async def get_pool(self, request: Request) -> Response:
        return Response.json(200, self.pool_info(request.params["name"]))

    async def post_pool(self, request: Request) -> Response:
        body = dict(request.json())
        create = body.pop("create", False)
        if not isinstance(create, bool):
            raise InvalidRequest("create must be true or false")
        spec = spec_from_request(body)
        result = await self.pools.add(spec, create=create)
        return Response.json(201, {**dataclasses.asdict(result), "info": self.pool_info(spec.name)})

    async def patch_pool(self, request: Request) -> Response:
        body = request.json()
        unknown = set(body) - {"weight", "capacity", "warn", "critical"}
        if unknown:
            raise InvalidRequest(f"unknown setting(s) {sorted(unknown)}; known: capacity, critical, warn, weight")
        result = await self.pools.set(
            request.params["name"],
            weight=_number(body, "weight"),
            capacity=body_size(body, "capacity"),
            warn=_ratio(body, "warn"),
            critical=_ratio(body, "critical"),
        )
        return Response.json(200, {**dataclasses.asdict(result), "info": self.pool_info(request.params["name"])})

    async def delete_pool(self, request: Request) -> Response:
        return Response.of(200, await self.pools.remove(request.params["name"]))

    async def post_passwd(self, request: Request) -> Response:
        """Wrap the data key under a new secret while mounted (the body's secrets, hex, are
        never logged or answered)."""
        body = request.json()
        try:
            old, new = bytes.fromhex(body["old_secret"]), bytes.fromhex(body["new_secret"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidRequest("give old_secret and new_secret, each as hex") from None
        if set(body) - {"old_secret", "new_secret"}:
            raise InvalidRequest("only old_secret and new_secret are known here")
        try:
            changed = await change_secret(self.layers.opened, self.layers.health, self.layers.meta, old, new)
        except WrongPassphrase as exc:
            raise HttpError(403, str(exc)) from None
        return Response.of(200, changed)

    async def post_drain(self, request: Request) -> Response:
        return Response.of(202, await self.pools.drain(request.params["name"]))

    async def patch_config(self, request: Request) -> Response:
        body = request.json()
        unknown = set(body) - {"replicas", "write_quorum"}
        if unknown or not body:
            raise InvalidRequest("give replicas and/or write_quorum")
        for key in body:
            if not isinstance(body[key], int) or isinstance(body[key], bool):
                raise InvalidRequest(f"{key} must be a whole number")
        replicas, quorum = body.get("replicas"), body.get("write_quorum")
        return Response.of(200, await self.pools.set_copies(replicas=replicas, write_quorum=quorum))

    async def post_check(self, request: Request) -> Response:
        """Where each block of a file (or of every file under a folder) has its copies, and
        whether they are there (soft) or good (deep); bad copies are queued for repair."""
        body = request.json()
        path, deep = body.get("path"), body.get("deep", False)
        if not isinstance(path, str) or not isinstance(deep, bool) or set(body) - {"path", "deep"}:
            raise InvalidRequest("give path (relative to the mount point) and, if you like, deep: true")
        try:
            files, cut, queued = await check_path(
                self.layers.meta,
                self.layers.poolset,
                self.layers.copies,
                self.layers.repairer,
                path,
                deep=deep,
            )
        except (NotFound, NotADirectory) as exc:
            raise UnknownName(str(exc)) from None
        return Response.json(
            200,
            {
                "files": [
                    {"path": f.path, "size": f.size, "blocks": [dataclasses.asdict(b) for b in f.blocks]} for f in files
                ],
                "truncated": cut,
                "queued_for_repair": queued,
                "deep": deep,
            },
        )

    async def post_offline(self, request: Request) -> Response:
        return Response.of(200, await self.pools.offline(request.params["name"]))

    async def post_online(self, request: Request) -> Response:
        return Response.of(202, await self.pools.online(request.params["name"]))

    async def post_undrain(self, request: Request) -> Response:
        return Response.of(200, await self.pools.undrain(request.params["name"]))

    async def post_clear(self, request: Request) -> Response:
        return Response.of(202, await self.pools.clear(request.params["name"]))

    async def get_repair(self, request: Request) -> Response:
        return Response.json(200, self.repair_info())

    async def get_scrub(self, request: Request) -> Response:
        return Response.of(200, self.scrub.progress())

    async def post_scrub(self, request: Request) -> Response:
        body = request.json()
        unknown = set(body) - {"restart", "rate"}
        if unknown:
            raise InvalidRequest(f"unknown setting(s) {sorted(unknown)}; known: rate, restart")
        restart = body.get("restart", False)
        if not isinstance(restart, bool):
            raise InvalidRequest("restart must be true or false")
        rate = body_size(body, "rate")
        assert self._nursery is not None
        self.scrub.start(self._nursery, restart=restart, rate=rate or None)
        return Response.of(202, self.scrub.progress())

    async def delete_scrub(self, request: Request) -> Response:
        self.scrub.cancel()
        return Response.json(200, {"cancelled": True})
