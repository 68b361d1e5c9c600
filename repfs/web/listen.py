"""The accept loop of `repfs web`: hypercorn's HTTP/1.1 and HTTP/2 protocol on connections
that repfs accepts itself, so that each TLS connection's verified client certificate
reaches the app. Hypercorn keeps the certificate to itself (its ASGI scope has no TLS
extension: pgjones/hypercorn#62), so the handshake is done here, before hypercorn's
connection handler runs (its own handshake call then returns at once), and the
certificate is kept by the connection's peer address for as long as it is open.

This uses hypercorn's connection handler (`hypercorn.trio.tcp_server.TCPServer`), not
only its public `serve`: pyproject pins hypercorn to the 0.18 series for that reason.
"""

from __future__ import annotations

import logging
import ssl
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

log = logging.getLogger(__name__)

Peer = tuple[str, int]


class PeerCerts:
    """The client certificate (PEM) of each open TLS connection that presented one, by
    the peer address the ASGI scope names as `client`."""

    def __init__(self) -> None:
        self._by_peer: dict[Peer, str] = {}

    def of(self, client: Any) -> str | None:
        if not isinstance(client, tuple | list) or len(client) < 2:
            return None
        return self._by_peer.get((str(client[0]), int(client[1])))

    def _add(self, peer: Peer, pem: str) -> None:
        self._by_peer[peer] = pem

    def _drop(self, peer: Peer) -> None:
        self._by_peer.pop(peer, None)


def _peer(stream: trio.abc.Stream) -> Peer | None:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(inner, trio.SocketStream):
        return None
    address = inner.socket.getpeername()
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else None


async def serve(
    app: Any, config: Config, peers: PeerCerts, stop: trio.Event,
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:  # fmt: skip
    """Serve `app` on `config.bind` until `stop`; then give open connections
    `config.graceful_timeout` seconds to finish."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)
    ssl_context = config.create_ssl_context()
    sockets = config.create_sockets()
    listeners: list[trio.abc.Listener[Any]] = []
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.listen(config.backlog)
        plain = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        listeners.append(trio.SSLListener(plain, ssl_context, https_compatible=True) if ssl_context else plain)

    async def connection(stream: trio.abc.Stream) -> None:
        peer = _peer(stream)
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(config.ssl_handshake_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", peer, exc)
                await trio.aclose_forcefully(stream)
                return
            der = stream.getpeercert(binary_form=True)
            if der and peer is not None:
                peers._add(peer, ssl.DER_cert_to_PEM_cert(der))
        try:
            await TCPServer(wrapped, config, context, ConnectionState({}), stream)  # type: ignore[arg-type]
        finally:
            if peer is not None:
                peers._drop(peer)

    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(partial(trio.serve_listeners, connection, listeners, handler_nursery=connections))
            task_status.started()
            await stop.wait()
            accepting.cancel_scope.cancel()
        await context.terminated.set()  # idle keep-alive connections close now
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
