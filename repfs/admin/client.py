"""Talk to a mount's admin socket: find it, send a request, get JSON back.

The socket is found from `--socket PATH`, else $REPFS_ADMIN_SOCKET, else from a mount
point (`-m MOUNTPOINT`: /proc/self/mountinfo names its FS_DIR) or a filesystem
directory (`-d FS_DIR`): FS_DIR/admin.sock, which is the socket or a link to it. With
none of them, the one repfs mount of this host is used. The user socket is found the
same way ($REPFS_USER_SOCKET, else `auth.user_socket_path(FS_DIR)`).
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any

from repfs.admin.auth import connect_unix, user_socket_path
from repfs.admin.service import SOCKET_NAME

ENV_SOCKET = "REPFS_ADMIN_SOCKET"
ENV_USER_SOCKET = "REPFS_USER_SOCKET"


class AdminError(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No daemon answers (no socket, nobody listening, not allowed to connect)."""


def repfs_mounts() -> dict[Path, Path]:
    """Mount point → FS_DIR of every repfs mount of this host."""
    found: dict[Path, Path] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                source = fields[sep + 2]
                if fields[sep + 1] == "fuse.repfs" and source.startswith("repfs:"):
                    found[Path(_unescape(fields[4]))] = Path(_unescape(source[len("repfs:") :]))
    except OSError:
        pass
    return found


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def find_socket(socket: Path | None = None, mountpoint: Path | None = None, fs_dir: Path | None = None) -> Path:
    if socket is not None:
        return socket
    if os.environ.get(ENV_SOCKET):
        return Path(os.environ[ENV_SOCKET])
    return find_fs_dir(mountpoint, fs_dir) / SOCKET_NAME


def find_user_socket(mountpoint: Path | None = None, fs_dir: Path | None = None) -> Path:
    if os.environ.get(ENV_USER_SOCKET):
        return Path(os.environ[ENV_USER_SOCKET])
    return user_socket_path(find_fs_dir(mountpoint, fs_dir))


def find_fs_dir(mountpoint: Path | None = None, fs_dir: Path | None = None) -> Path:
    """FS_DIR of the mount meant: `fs_dir`, else the one `mountpoint` names, else the only one."""
    if fs_dir is not None:
        return fs_dir.absolute()
    mounts = repfs_mounts()
    if mountpoint is not None:
        target = Path(os.path.abspath(mountpoint))
        if target not in mounts:
            raise Unreachable(f"{mountpoint} is not a mounted repfs filesystem")
        return mounts[target]
    if len(mounts) == 1:
        return next(iter(mounts.values()))
    if not mounts:
        raise Unreachable("no repfs filesystem is mounted here; give --socket, -m MOUNTPOINT or -d FS_DIR")
    raise Unreachable(
        "several repfs filesystems are mounted (" + ", ".join(map(str, mounts)) + "); choose one with -m MOUNTPOINT"
    )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = connect_unix(self.path, self.timeout)


class AdminClient:
    """Requests to the admin socket (or, `user=True`, to the user socket)."""

    def __init__(self, path: Path, *, timeout: float = 120.0, user: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        self.what = "user socket" if user else "admin socket"
        self.who = "" if user else ": only root and the admin group may"

    def request(
        self, method: str, target: str, body: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = dict(headers or {})
            if payload is not None:
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, target, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except PermissionError:
                raise Unreachable(f"not allowed to use the {self.what} {self.path}{self.who}") from None
            except FileNotFoundError:
                raise Unreachable(f"no {self.what} at {self.path}: is the filesystem mounted?") from None
            except ConnectionRefusedError:
                raise Unreachable(f"nobody answers on {self.path}: the daemon is not running") from None
            except (OSError, http.client.HTTPException) as exc:
                raise Unreachable(f"cannot talk to the daemon at {self.path}: {exc}") from None
        finally:
            conn.close()
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = {"error": raw.decode(errors="replace")}
        if response.status >= 400:
            message = value.get("error") if isinstance(value, dict) else None
            raise AdminError(response.status, str(message or f"HTTP {response.status}"))
        return value

    def get(self, target: str) -> Any:
        return self.request("GET", target)

    def post(self, target: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", target, body if body is not None else {})
