"""Resumable uploads by the tus 1.0 protocol at /api/v1/uploads: core, creation,
creation-with-upload, expiration, termination, checksum (sha256, sha1) and concatenation,
so tus-js-client, Uppy and curl work. Where the bytes wait and what survives what is in
`uploads`; the file work is done as the account, like every other route.

Metadata (`Upload-Metadata`) names the target: `path` (relative to the root), or `folder`
and `filename` (or `name`, as Uppy sends it). A part of a concatenated upload
(`Upload-Concat: partial`) needs none; the final upload names it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from repfs.web import files, keyscope
from repfs.web.asuser import ROOT, Who, Workers
from repfs.web.bodies import DIGITS
from repfs.web.errors import ApiError
from repfs.web.observe import WebMetrics
from repfs.web.uploads import PARTS_FOLDER, STAGING_PREFIX, Upload, Uploads

log = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,expiration,termination,checksum,concatenation"
CHECKSUMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
OFFSET_TYPE = "application/offset+octet-stream"
CHUNK = 1 << 20


def parse_metadata(header: str) -> dict[str, str]:
    out = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "bad_request", f"Upload-Metadata: {key}'s value is not base64 of UTF-8") from None
    return out


def target_of(meta: dict[str, str]) -> str | None:
    if "path" in meta:
        return files.joined(files.split(meta["path"]))
    name = meta.get("filename") or meta.get("name")
    if name is None:
        return None
    if "/" in name:
        raise ApiError(400, "bad_request", "filename must be a name, not a path (give folder, or path)")
    return files.joined([*files.split(meta.get("folder", "")), name])


class Tus:
    def __init__(
        self, tree: files.Tree, workers: Workers, uploads: Uploads, metrics: WebMetrics, *, max_size: int
    ) -> None:
        self.tree = tree
        self.workers = workers
        self.metrics = metrics
        self.uploads = uploads
        self.max_size = max_size
        self._db = trio.CapacityLimiter(1)
        self._locks: dict[str, trio.Lock] = {}

    async def _db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._db)

    def _headers(self, upload: Upload | None = None) -> dict[str, str]:
        out = {"Tus-Resumable": VERSION, "Cache-Control": "no-store"}
        if upload is not None:
            out["Upload-Offset"] = str(upload.offset)
            out["Upload-Length"] = str(upload.length)
            if not upload.done:
                out["Upload-Expires"] = email.utils.formatdate(upload.expires, usegmt=True)
            if upload.concat:
                out["Upload-Concat"] = upload.concat if upload.concat == "partial" else "final;" + " ".join(
                    f"/api/v1/uploads/{p}" for p in upload.parts)  # fmt: skip
        return out

    def wrap(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """tus's version check, and its header on every answer (errors too)."""

        async def call(request: Request) -> Response:
            if request.method != "OPTIONS" and request.headers.get("tus-resumable") != VERSION:
                return Response(status_code=412, headers={"Tus-Resumable": VERSION, "Tus-Version": VERSION})
            response = await handler(request)
            response.headers.setdefault("Tus-Resumable", VERSION)
            return response

        return call

    async def _mine(self, request: Request) -> Upload:
        """The upload the URL names, if the caller's and not expired (404 otherwise)."""
        upload: Upload | None = await self._db_call(self.uploads.get, request.path_params["id"])
        if upload is None or upload.account != request.state.who.name:
            raise ApiError(404, "not_found", "no such upload (finished long ago, expired or never made)")
        if upload.expires < time.time() and not upload.done:
            await self._drop(upload, request.state.who)
            raise ApiError(404, "not_found", "the upload expired")
        keyscope.check(request, "write", upload.target or files.joined([upload.account, PARTS_FOLDER]))
        return upload

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, upload_id: str) -> AsyncIterator[None]:
        """PATCH, DELETE and completion of one upload never overlap (a client's retry
        while its first request still writes waits for it)."""
        lock = self._locks.setdefault(upload_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(upload_id, None)

    # --- the routes -------------------------------------------------------------------
    async def options(self, request: Request) -> Response:
        return Response(status_code=204, headers={
            "Tus-Resumable": VERSION, "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(self.max_size), "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})  # fmt: skip

    async def post(self, request: Request) -> Response:
        who: Who = request.state.who
        meta = parse_metadata(request.headers.get("upload-metadata", ""))
        concat = request.headers.get("upload-concat", "")
        if concat.startswith("final;"):
            return await self._final(request, who, meta, concat.removeprefix("final;"))
        if concat not in ("", "partial"):
            raise ApiError(400, "bad_request", "Upload-Concat is partial or final;URL ...")
        if request.headers.get("upload-defer-length"):
            raise ApiError(400, "bad_request", "Upload-Defer-Length is not supported: give Upload-Length")
        length = _length(request.headers.get("upload-length"))
        if length > self.max_size:
            raise ApiError(413, "too_large", f"an upload takes at most {self.max_size} bytes")
        target = None if concat == "partial" else target_of(meta)
        if concat != "partial" and target is None:
            raise ApiError(400, "bad_request", "Upload-Metadata names no target: give path, or folder and filename")
        keyscope.check(request, "write", target or files.joined([who.name, PARTS_FOLDER]))
        upload = Upload(self.uploads.new_id(), who.name, target, "", length, 0, meta, concat)
        await self._check_free(upload)
        await self._made(who, upload)
        log.info("upload %s by %s to %s: %d bytes", upload.id, who.name, target or "(a part)", length)
        headers = {**self._headers(upload), "Location": f"{request.base_url}api/v1/uploads/{upload.id}"}
        try:
            if request.headers.get("content-type") == OFFSET_TYPE:  # creation-with-upload
                await self._receive(request, who, upload)
                headers.update(self._headers(upload))
            elif length == 0:
                await self._complete(who, upload)
        except BaseException:  # the client learns no Location: nothing of it may stay
            with trio.CancelScope(shield=True):
                await self._drop(upload, who)
            raise
        return Response(status_code=201, headers=headers)

    async def _made(self, who: Who, upload: Upload) -> None:
        """The staging file and the record, both or neither (a cut request leaves no file
        nobody would ever remove)."""
        with trio.CancelScope(shield=True):
            upload.staging = await self.workers.call(who, self._stage, upload)
            try:
                await self._db_call(self.uploads.add, upload)
            except BaseException:
                with contextlib.suppress(OSError):
                    await self.workers.call(who, self.tree.delete, upload.staging)
                raise

    async def head(self, request: Request) -> Response:
        upload = await self._mine(request)
        if not upload.done:  # its bytes must still be there (ENOTCONN, 503, while the mount is away)
            try:
                await self.workers.call(request.state.who, self.tree.stat, upload.staging)
            except FileNotFoundError:
                await self._db_call(self.uploads.remove, upload.id)
                raise ApiError(404, "not_found", "the upload's bytes are gone (deleted on the mount)") from None
        return Response(status_code=200, headers=self._headers(upload))

    async def patch(self, request: Request) -> Response:
        who: Who = request.state.who
        upload = await self._mine(request)
        if request.headers.get("content-type") != OFFSET_TYPE:
            raise ApiError(415, "unsupported_media_type", f"a PATCH's Content-Type is {OFFSET_TYPE}")
        if upload.concat == "final":
            raise ApiError(403, "forbidden", "a final upload is made from its parts: it takes no PATCH")
        offset = request.headers.get("upload-offset")
        async with self._one_at_a_time(upload.id):
            upload = await self._mine(request)  # as it is now that no other request works on it
            if offset is None or not DIGITS.fullmatch(offset) or int(offset) != upload.offset or upload.done:
                raise ApiError(409, "conflict", f"Upload-Offset must be {upload.offset}, where the upload is")
            await self._receive(request, who, upload)
        return Response(status_code=204, headers=self._headers(upload))

    async def delete(self, request: Request) -> Response:
        upload = await self._mine(request)
        async with self._one_at_a_time(upload.id):
            await self._drop(upload, request.state.who)
        return Response(status_code=204, headers={"Tus-Resumable": VERSION})

    # --- the work ---------------------------------------------------------------------
    async def _check_free(self, upload: Upload) -> None:
        if upload.target is None:
            return
        others = [u for u in await self._db_call(self.uploads.pending_to, upload.target) if u.account != upload.account]
        if others:
            raise ApiError(423, "locked", f"{upload.target} is being uploaded by another account")

    def _stage(self, upload: Upload) -> str:
        """Make the staging file, as long as the upload (the quota takes it all at once)."""
        tree = self.tree
        if upload.target is None:
            folder = [upload.account, PARTS_FOLDER]
            with contextlib.suppress(FileExistsError):
                tree.mkdir(files.joined(folder), 0o700)
        else:
            folder = files.split(upload.target)[:-1]
        staging = files.joined([*folder, f"{STAGING_PREFIX}{upload.id}"])
        fd = tree.open_file(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.ftruncate(fd, upload.length)
                os.fsync(fd)
            except OSError:
                os.close(fd)
                fd = -1
                tree.delete(staging)
                raise
        finally:
            if fd >= 0:
                os.close(fd)
        return staging

    async def _receive(self, request: Request, who: Who, upload: Upload) -> None:
        """The request's body at the upload's offset; the offset moves once it is durable."""
        algorithm, expected = _checksum(request.headers.get("upload-checksum"))
        digest = CHECKSUMS[algorithm]() if algorithm else None
        fd = await self.workers.call(who, self.tree.open_file, upload.staging, os.O_WRONLY)
        pos = upload.offset  # where the bytes in `pending` go
        pending = bytearray()  # the body arrives in pieces of a few KiB: written 256 KiB at a time
        cut = False
        self.metrics.uploads.inc()
        try:
            try:
                async for chunk in request.stream():
                    self.metrics.bytes_in.inc(len(chunk))
                    if pos + len(pending) + len(chunk) > upload.length:
                        raise ApiError(413, "too_large", f"more bytes than Upload-Length ({upload.length})")
                    if digest is not None:
                        digest.update(chunk)
                    pending += chunk
                    if len(pending) >= files.WRITE_BATCH:
                        await self.workers.call(who, _pwrite_all, fd, pending, pos)
                        pos += len(pending)
                        pending.clear()
            except ClientDisconnect:
                cut = True  # what arrived is kept (without a checksum to check it by)
            if pending:
                await self.workers.call(who, _pwrite_all, fd, pending, pos)
                pos += len(pending)
            await self.workers.call(who, os.fsync, fd)
        finally:
            await self.workers.close(fd)
            self.metrics.uploads.dec()
        if digest is not None:
            if cut:
                raise ApiError(400, "bad_request", "the connection closed before the chunk was whole")
            if digest.digest() != expected:
                raise ApiError(460, "checksum_mismatch", f"the chunk's {algorithm} is not Upload-Checksum's: resend it")
        if pos >= upload.length:
            await self._complete(who, upload)
        else:
            await self._db_call(self.uploads.advanced, upload, pos)

    async def _complete(self, who: Who, upload: Upload) -> None:
        """A whole upload: moved into place (a part waits for its final upload)."""
        if upload.target is not None:
            await self.workers.call(who, self.tree.replace, upload.staging, upload.target)
            log.info("upload %s complete: %s", upload.id, upload.target)
        await self._db_call(self.uploads.advanced, upload, upload.length)
        if upload.target is not None:
            await self._db_call(self.uploads.finished, upload)

    async def _final(self, request: Request, who: Who, meta: dict[str, str], urls: str) -> Response:
        ids = [u.rstrip("/").rsplit("/", 1)[-1] for u in urls.split()]
        if not ids:
            raise ApiError(400, "bad_request", "Upload-Concat: final; names no parts")
        parts = []
        for part_id in ids:
            part = await self._db_call(self.uploads.get, part_id)
            if part is None or part.account != who.name or part.concat != "partial":
                raise ApiError(400, "bad_request", f"{part_id} is no partial upload of yours")
            if not part.complete:
                raise ApiError(400, "bad_request", f"the part {part_id} is not complete")
            parts.append(part)
        target = target_of(meta)
        if target is None:
            raise ApiError(400, "bad_request", "Upload-Metadata names no target: give path, or folder and filename")
        keyscope.check(request, "write", target)
        length = sum(p.length for p in parts)
        if length > self.max_size:
            raise ApiError(413, "too_large", f"an upload takes at most {self.max_size} bytes")
        upload = Upload(self.uploads.new_id(), who.name, target, "", length, 0, meta, "final", ids)
        await self._check_free(upload)
        await self._made(who, upload)
        try:
            await self.workers.call(who, _concatenate, self.tree, [p.staging for p in parts], upload.staging)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._drop(upload, who)
            raise
        await self._complete(who, upload)
        for part in parts:
            await self._drop(part, who)
        headers = {**self._headers(upload), "Location": f"{request.base_url}api/v1/uploads/{upload.id}"}
        return Response(status_code=201, headers=headers)

    async def _drop(self, upload: Upload, who: Who) -> None:
        if not upload.done:
            with contextlib.suppress(OSError):
                await self.workers.call(who, self.tree.delete, upload.staging)
        await self._db_call(self.uploads.remove, upload.id)

    async def expire(self) -> int:
        """Forget uploads past their expiry, and their staging files."""
        gone = await self._db_call(self.uploads.expired)
        for upload in gone:
            await self._drop(upload, ROOT)
        if gone:
            log.info("%d expired uploads removed", len(gone))
        return len(gone)

    def routes(self, route: Callable[..., Callable[[Request], Awaitable[Response]]]) -> list[Route]:
        w = self.wrap
        return [
            Route("/api/v1/uploads", w(route(self.options, auth=False)), methods=["OPTIONS"]),
            Route("/api/v1/uploads", w(route(self.post)), methods=["POST"]),
            Route("/api/v1/uploads/{id}", w(route(self.head)), methods=["HEAD"]),
            Route("/api/v1/uploads/{id}", w(route(self.patch)), methods=["PATCH"]),
            Route("/api/v1/uploads/{id}", w(route(self.delete)), methods=["DELETE"]),
        ]


def _length(value: str | None) -> int:
    if value is None or not DIGITS.fullmatch(value):
        raise ApiError(400, "bad_request", "Upload-Length must be the upload's size in bytes")
    return int(value)


def _checksum(header: str | None) -> tuple[str | None, bytes]:
    if header is None:
        return None, b""
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise ApiError(400, "bad_request", f"Upload-Checksum: {algorithm} is not one of {', '.join(CHECKSUMS)}")
    try:
        return algorithm, base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ApiError(400, "bad_request", "Upload-Checksum: the digest is not base64") from None


def _pwrite_all(fd: int, data: bytes | bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def _concatenate(tree: files.Tree, parts: list[str], staging: str) -> None:
    out = tree.open_file(staging, os.O_WRONLY)
    try:
        pos = 0
        for part in parts:
            src = tree.open_file(part, os.O_RDONLY)
            try:
                while chunk := os.read(src, CHUNK):
                    _pwrite_all(out, chunk, pos)
                    pos += len(chunk)
            finally:
                os.close(src)
        os.fsync(out)
    finally:
        os.close(out)
