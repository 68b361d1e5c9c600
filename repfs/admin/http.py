"""A small, bounded HTTP/1.1 server on trio streams, with h11 doing the parsing.

It serves the admin API (JSON on a Unix socket) and the Prometheus metrics (text on a
TCP port). Bounded in every direction, so that no client can hurt the daemon:
headers at most `MAX_HEADER` bytes, a body at most `max_body`, at most `max_connections`
connections at once (more are answered 503 and closed), `timeout` seconds to send a
request and to take the answer, and an error in a handler answers 500 and is logged with
its traceback: it never reaches the daemon's nursery.

Handlers are `async def handler(request) -> Response`; raise `HttpError(status, message)`
for an error answer, which is JSON `{"error": message}`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from repfs.config import parse_size
from repfs.errors import InvalidRequest

log = logging.getLogger(__name__)

MAX_HEADER = 16 * 1024
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 16
SERVER_NAME = b"repfs"

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    413: "Content Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip


class HttpError(Exception):
    """An error answer: `status` with JSON {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer: Any = None  # what the server's `identify` said of the connection
    params: dict[str, str] = field(default_factory=dict)  # from the route's pattern

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); 400 otherwise."""
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HttpError(400, "the body must be a JSON object")
        return value


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # more headers (Content-Encoding, WWW-Authenticate, ...)

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        return cls(status, (json.dumps(value, indent=1, sort_keys=False) + "\n").encode())

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        return cls.json(status, {"error": message})

    @classmethod
    def of(cls, status: int, result: Any) -> Response:
        """A typed result (a dataclass, e.g. of repfs.control) as the JSON body."""
        return cls.json(status, dataclasses.asdict(result))


def body_size(body: dict[str, Any], key: str, *, count: bool = False) -> int | None:
    """A size field of a JSON body: bytes, or text like '500G' (a plain number when
    `count`); None when absent. InvalidRequest (400) otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            if count:
                if not value.strip().isdigit():
                    raise ValueError(f"{value!r} is not a number")
                return int(value)
            return parse_size(value)
        except ValueError as exc:
            raise InvalidRequest(f"{key}: {exc}") from None
    kind = "a number" if count else "a size in bytes or like '500G'"
    raise InvalidRequest(f"{key} must be {kind} (0: none), got {value!r}")


def peer_uid(request: Request) -> int:
    """The uid of who asks on a Unix socket (root when the peer is unknown)."""
    peer = request.peer
    return int(peer.uid) if peer is not None else 0


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Routes `METHOD /path/{name}` patterns to handlers: 404 for an unknown path, 405 for
    a known path asked with another method."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$"
        self.routes.append((method, re.compile(regex), handler))

    async def __call__(self, request: Request) -> Response:
        allowed = []
        for method, regex, handler in self.routes:
            m = regex.match(request.path)
            if m is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            request.params = m.groupdict()
            return await handler(request)
        if allowed:
            raise HttpError(405, f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}")
        raise HttpError(404, f"no such endpoint: {request.path}")


class _TooLarge(Exception):
    pass


class HttpServer:
    """Serves `app` on listeners; `identify(stream)` names the peer of a connection (or
    raises HttpError, e.g. 403, to turn it away with that answer)."""

    def __init__(
        self,
        app: Handler,
        *,
        identify: Callable[[trio.abc.Stream], Any] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        name: str = "http",
    ) -> None:
        self.app = app
        self.identify = identify
        self.max_body = max_body
        self.timeout = timeout
        self.name = name
        self._slots = trio.Semaphore(max_connections)
        self.requests = 0
        self.rejected = 0

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started()

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: wait a moment, never die
                    log.warning("%s: cannot accept a connection: %s", self.name, exc)
                    await trio.sleep(0.1)  # back-off, not synchronisation
                    continue
                nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        try:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                self.rejected += 1
                await self._answer_once(stream, conn, Response.error(503, "too many connections; try again"))
                return
            try:
                await self._serve_connection(stream, conn)
            finally:
                self._slots.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError):
            pass  # the client went away, is too slow, or failed the TLS handshake: nothing to tell it
        finally:
            with trio.move_on_after(1) as cs:
                cs.shield = True
                await stream.aclose()

    async def _answer_once(self, stream: trio.abc.Stream, conn: h11.Connection, response: Response) -> None:
        """Answer without reading a request (503), then close."""
        with trio.fail_after(self.timeout):
            try:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        with trio.move_on_after(0.5):
                            conn.receive_data(bytes(await stream.receive_some(MAX_HEADER)))
                            continue
                        break
                    if isinstance(event, h11.Request | h11.ConnectionClosed):
                        break
            except h11.RemoteProtocolError:
                pass
            await self._send(stream, conn, response, close=True)

    async def _serve_connection(self, stream: trio.abc.Stream, conn: h11.Connection) -> None:
        peer: Any = None
        refused: HttpError | None = None
        if self.identify is not None:
            try:
                peer = self.identify(stream)
            except HttpError as exc:
                refused = exc
        while True:
            try:
                with trio.fail_after(self.timeout):
                    request = await self._read_request(stream, conn)
            except trio.TooSlowError:
                await self._send_error(stream, conn, 408, f"no complete request within {self.timeout:g} s")
                return
            except h11.RemoteProtocolError as exc:
                await self._send_error(stream, conn, exc.error_status_hint, f"bad HTTP request: {exc}")
                return
            except _TooLarge:
                await self._send_error(stream, conn, 413, f"the request body is larger than {self.max_body} bytes")
                return
            if request is None:
                return
            self.requests += 1
            request.peer = peer
            if refused is not None:
                response = Response.error(refused.status, refused.message)
            else:
                response = await self._handle(request)
            with trio.fail_after(self.timeout):
                await self._send(stream, conn, response, close=refused is not None)
            if refused is not None or conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _handle(self, request: Request) -> Response:
        try:
            return await self.app(request)
        except HttpError as exc:
            return Response.error(exc.status, exc.message)
        except Exception as exc:  # a bad request must never end the daemon
            log.error("%s: %s %s failed", self.name, request.method, request.path, exc_info=exc)
            return Response.error(500, f"internal error: {type(exc).__name__}: {exc}")

    async def _read_request(self, stream: trio.abc.Stream, conn: h11.Connection) -> Request | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = bytes(await stream.receive_some(65536))
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                request = event
                if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEADER:
                    raise h11.RemoteProtocolError("the request's headers are too large", error_status_hint=431)
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > self.max_body:
                    raise _TooLarge()
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise _TooLarge()
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
                return Request(request.method.decode("ascii", "replace"), request.target.decode("latin-1"), headers,
                               bytes(body))  # fmt: skip

    async def _send_error(self, stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str) -> None:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with trio.move_on_after(self.timeout):
                await self._send(stream, conn, Response.error(status, message), close=True)

    async def _send(self, stream: trio.abc.Stream, conn: h11.Connection, response: Response, *, close: bool) -> None:
        headers = [
            (b"Content-Type", response.content_type.encode()),
            (b"Content-Length", str(len(response.body)).encode()),
            (b"Server", SERVER_NAME),
        ]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if close:
            headers.append((b"Connection", b"close"))
        reason = REASONS.get(response.status, "").encode()
        out = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        out = (out or b"") + (conn.send(h11.Data(data=response.body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.send_all(out)
