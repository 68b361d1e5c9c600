"""`repfs web`: find the mount, make or load the certificate, serve the API with hypercorn
on trio until SIGTERM or SIGINT. A process of its own: a fault, overload or restart of the
web side never takes the mount down or slows FUSE through the GIL."""

from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import make_asgi_app

from repfs import mountinfo
from repfs.admin.auth import resolve_group, user_socket_path
from repfs.admin.client import AdminError, Unreachable
from repfs.admin.service import SOCKET_NAME
from repfs.errors import SetupError
from repfs.web import listen, tls
from repfs.web.app import Api, WebOptions
from repfs.web.control import Control
from repfs.web.files import Tree
from repfs.web.sessions import DEFAULT_TTL, Sessions
from repfs.web.uploads import DEFAULT_EXPIRY, Uploads

log = logging.getLogger(__name__)

UPKEEP_INTERVAL = 600.0  # seconds between removals of expired uploads and sessions


@dataclass(frozen=True)
class ServeOptions:
    target: Path  # the mount point, or FS_DIR of a mounted filesystem
    bind: str = "127.0.0.1:8443"
    cert: Path | None = None
    key: Path | None = None
    insecure_http: bool = False
    state: Path | None = None  # default FS_DIR/web
    token_ttl: float = DEFAULT_TTL
    upload_expiry: float = DEFAULT_EXPIRY
    admin_socket: Path | None = None  # default FS_DIR/admin.sock
    admin_group: str | None = None  # default repfs-admin, if it exists
    metrics: str | None = None  # ADDR:PORT for Prometheus, plain HTTP; None: off
    web: WebOptions = field(default_factory=WebOptions)


def locate(target: Path) -> tuple[Path, Path]:
    """(mount point, FS_DIR) of a mounted repfs filesystem named by either."""
    target = target.absolute()
    fs_dir = mountinfo.fs_dir_of(target)
    if fs_dir is not None:
        return target, fs_dir
    points = mountinfo.mountpoints_of(target)
    if points:
        return Path(points[0]), target
    raise SetupError(f"{target} is not a mounted repfs filesystem (nor the FS_DIR of one): mount it first")


def config_for(opts: ServeOptions, state: Path, client_ca: str | None = None) -> tuple[Config, str]:
    config = Config()
    config.bind = [opts.bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("repfs.web.http")
    config.keep_alive_timeout = 75
    config.read_timeout = None  # hypercorn's applies while an answer is sent too: long downloads need none
    config.h11_max_incomplete_size = 16 * 1024  # request line and headers
    config.graceful_timeout = 5
    config.ssl_handshake_timeout = 30
    if opts.insecure_http:
        log.warning("serving plain HTTP (--insecure-http): passwords and files cross the network unencrypted; "
                    "for debugging only")  # fmt: skip
        return config, "http"
    cert, key = tls.certificate(state, opts.cert, opts.key)
    config.certfile, config.keyfile = str(cert), str(key)
    log.info("TLS certificate %s, SHA-256 fingerprint %s", cert, tls.fingerprint(cert))
    if client_ca is not None:  # a client certificate repfs signed is an account's sign-in; none is needed
        ca_file = state / "client-ca.pem"
        ca_file.write_text(client_ca)
        config.ca_certs, config.verify_mode = str(ca_file), ssl.CERT_OPTIONAL
    return config, "https"


async def serve(opts: ServeOptions, *, ready: Callable[[str], None] | None = None) -> None:
    mountpoint, fs_dir = locate(opts.target)
    state = (opts.state or fs_dir / "web").absolute()
    admin_socket = opts.admin_socket or fs_dir / SOCKET_NAME
    web_opts = replace(opts.web, admin_socket=admin_socket, admin_gid=resolve_group(opts.admin_group),
                       admin_group=opts.admin_group)  # fmt: skip
    control = Control(user_socket_path(fs_dir))
    client_ca = None if opts.insecure_http else await control.client_ca()
    config, scheme = config_for(opts, state, client_ca)
    sessions = Sessions(state / "sessions.sqlite", ttl=opts.token_ttl)
    uploads = Uploads(state / "uploads.sqlite", expiry=opts.upload_expiry)
    peers = listen.PeerCerts()
    api = Api(Tree(str(mountpoint)), control, sessions, uploads, web_opts, peers)
    stop = trio.Event()

    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal %s: stopping", signal.Signals(signum).name)
                stop.set()
                return

    async def upkeep() -> None:
        while True:
            try:
                await api.tus.expire()
                await api.db_call(sessions.prune)
            except Exception as exc:  # noqa: BLE001 - upkeep must not stop the web process
                log.warning("expired uploads and sessions left for later: %s", exc)
            await trio.sleep(UPKEEP_INTERVAL)  # a period, not synchronisation

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        nursery.start_soon(upkeep)
        await nursery.start(listen.serve, api.app(), config, peers, stop)
        if opts.metrics is not None:
            plain = Config()
            plain.bind = [opts.metrics]
            plain.accesslog, plain.errorlog = None, logging.getLogger("repfs.web.http")
            exporter = make_asgi_app(registry=api.metrics.registry)
            await nursery.start(partial(hypercorn_serve, exporter, plain, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
            log.info("metrics at http://%s/metrics", opts.metrics)
        where = f"{scheme}://{opts.bind}"
        log.info("serving the API of %s at %s/api/v1 and its pages at %s/", mountpoint, where, where)
        try:
            await api.onboarding.start(where)
        except (AdminError, Unreachable) as exc:
            log.warning("could not learn whether an administrator exists: %s", exc)
        if ready is not None:
            ready(where)
        await stop.wait()
        nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout + 1
        await trio.sleep(config.graceful_timeout + 0.5)  # hypercorn's graceful stop, then the rest goes
        nursery.cancel_scope.cancel()
    log.info("stopped")
