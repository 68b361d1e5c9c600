"""Who may use the admin socket, and the socket itself.

The socket is a Unix socket of mode 0660, owned by the daemon's user and the admin group.
That is the first gate; the second is the caller's credentials as the kernel gives them
(SO_PEERCRED: pid, uid, gid) plus its supplementary groups (from /proc/<pid>/status): a
caller is an administrator when it is root, the user the daemon runs as, or a member of
the admin group. Anyone else gets 403, even if the socket's mode was loosened.

The admin group is `--admin-group` (a name or a number); by default `repfs-admin` when
that group exists, else none (root and the daemon's user only).

The user socket (repfs.admin.user_socket) is made by the same `bind_socket`, mode 0666:
anyone may connect, and each request is authorized by the peer's uid.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import trio

from repfs.admin.http import HttpError
from repfs.errors import SetupError

log = logging.getLogger(__name__)

DEFAULT_ADMIN_GROUP = "repfs-admin"
SOCKET_MODE = 0o660
USER_SOCKET_MODE = 0o666
RUN_DIR = Path("/run/repfs")
LISTEN_BACKLOG = 128
# sockaddr_un holds 108 bytes; longer paths are reached through /proc/self/fd/N/NAME
_MAX_SUN_PATH = 100
_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int]

    def describe(self) -> str:
        return f"pid {self.pid} uid {self.uid} gid {self.gid}"


def resolve_group(name: str | None) -> int | None:
    """The admin group's gid: `name` (a group name or number), else `repfs-admin` if it
    exists, else None. An unknown name given explicitly is a SetupError."""
    if name is None:
        try:
            return grp.getgrnam(DEFAULT_ADMIN_GROUP).gr_gid
        except KeyError:
            return None
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise SetupError(f"admin group {name!r} does not exist; create it (groupadd {name}) or name another") from None


def peer_of(sock: socket.socket | trio.socket.SocketType) -> Peer:
    """The credentials of the process at the other end of a Unix socket."""
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return Peer(pid, uid, gid, frozenset(_groups_of(pid)))


def _groups_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


class Gate:
    """Decides whether a peer is an administrator."""

    def __init__(self, admin_gid: int | None) -> None:
        self.admin_gid = admin_gid
        self.uid = os.getuid()

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.uid):
            return True
        return self.admin_gid is not None and (peer.gid == self.admin_gid or self.admin_gid in peer.groups)

    def identify(self, stream: trio.abc.Stream) -> Peer:
        """The peer of a connection, or HttpError 403 if it is not an administrator."""
        assert isinstance(stream, trio.SocketStream)
        peer = peer_of(stream.socket)
        if not self.allows(peer):
            log.warning("admin socket: refused %s: not root nor in the admin group", peer.describe())
            raise HttpError(403, "permission denied: only root and members of the admin group may use this socket")
        return peer


def user_socket_path(fs_dir: Path) -> Path:
    """Where a filesystem's user socket is by default: under /run/repfs, in a folder named
    after FS_DIR's path, so a user finds it from the mount point (mountinfo names FS_DIR)
    without being able to read FS_DIR."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(fs_dir))).hexdigest()[:16]
    return RUN_DIR / digest / "user.sock"


def _short(path: Path) -> tuple[str, int | None]:
    """A name for `path` that fits in sockaddr_un, and a directory fd to close after."""
    if len(os.fsencode(path)) <= _MAX_SUN_PATH:
        return str(path), None
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def connect_unix(path: Path, timeout: float | None = None) -> socket.socket:
    """A connected Unix socket (blocking), whatever the length of `path`."""
    name, fd = _short(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(name)
    except BaseException:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return sock


def _in_use(path: Path) -> bool:
    try:
        connect_unix(path, timeout=2).close()
    except OSError:
        return False
    return True


def bind_socket(
    path: Path, admin_gid: int | None, *, mode: int = SOCKET_MODE, what: str = "admin socket"
) -> trio.socket.SocketType:
    """A listening Unix socket at `path`, `mode` (0660), group `admin_gid`. A stale socket
    (one nobody answers on) is replaced; a live one, or anything else at the path, is refused."""
    st: os.stat_result | None
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    else:
        if stat.S_ISLNK(st.st_mode) and not _in_use(path):
            # FS_DIR/admin.sock leads to a socket elsewhere (--admin-socket) of a daemon that
            # was killed: the caller holds FS_DIR's lock, so nobody else serves it any more
            log.info("%s %s: removing the link a stopped daemon left (to %s)", what, path, os.readlink(path))
            path.unlink()
            st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise SetupError(f"{what} {path}: something other than a socket is there; remove it")
        if _in_use(path):
            option = "--admin-socket" if what == "admin socket" else "--user-socket"
            raise SetupError(f"{what} {path} is in use by another process; choose another with {option}")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name, fd = _short(path)
    old_umask = os.umask(0o177)  # no moment at which others could connect
    try:
        sock.bind(name)
    except OSError as exc:
        sock.close()
        raise SetupError(f"cannot create the {what} {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
        if fd is not None:
            os.close(fd)
    if admin_gid is not None:
        try:
            os.chown(path, -1, admin_gid)
        except OSError as exc:
            log.warning("%s %s: cannot give it to group %d: %s", what, path, admin_gid, exc.strerror)
    os.chmod(path, mode)
    # A burst of callers (monitoring, scripts) waits in the backlog rather than being refused
    # (a non-blocking connect to a full Unix socket backlog fails at once with EAGAIN).
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return trio.socket.from_stdlib_socket(sock)


def remove_socket(path: Path, ino: int | None) -> None:
    """Remove the socket at `path` if it is still ours (same inode)."""
    with contextlib.suppress(OSError):
        if ino is None or path.lstat().st_ino == ino:
            path.unlink()
