"""The exception hierarchy of repfs.

Every error raised inside repfs derives from `RepfsError` and carries the errno
that the FUSE boundary answers with. The CLI boundary prints `str(exc)` (one line
that says what to do) and exits non-zero. Messages never contain secrets.
"""

from __future__ import annotations

import errno as _errno


class RepfsError(Exception):
    """Base of all repfs errors; `errno` is what a FUSE caller sees."""

    errno: int = _errno.EIO

    def __init__(self, message: str = "", *, errno: int | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        if errno is not None:
            self.errno = errno


# --- filesystem semantics -------------------------------------------------------


class FsError(RepfsError):
    """A POSIX-level error reported to the caller as its errno."""


class NotFound(FsError):
    """No such file or directory."""

    errno = _errno.ENOENT


class AlreadyExists(FsError):
    """File exists."""

    errno = _errno.EEXIST


class NotEmpty(FsError):
    """Directory not empty."""

    errno = _errno.ENOTEMPTY


class NotADirectory(FsError):
    """Not a directory."""

    errno = _errno.ENOTDIR


class IsADirectory(FsError):
    """Is a directory."""

    errno = _errno.EISDIR


class AccessDenied(FsError):
    """Permission denied."""

    errno = _errno.EACCES


class NotPermitted(FsError):
    """Operation not permitted."""

    errno = _errno.EPERM


class CrossNamespace(FsError):
    """A rename or link between two accounts' namespaces (each is its own device)."""

    errno = _errno.EXDEV


class NameTooLong(FsError):
    """File name too long."""

    errno = _errno.ENAMETOOLONG


class InvalidArgument(FsError):
    """Invalid argument."""

    errno = _errno.EINVAL


class NoAttribute(FsError):
    """No such extended attribute."""

    errno = _errno.ENODATA


class NotSupported(FsError):
    """Operation not supported."""

    errno = _errno.EOPNOTSUPP


class FileTooLarge(FsError):
    """File too large."""

    errno = _errno.EFBIG


class BadFileHandle(FsError):
    """Bad file handle."""

    errno = _errno.EBADF


class FileLocked(FsError):
    """Another account is modifying the file (it holds its lock)."""

    errno = _errno.EBUSY


class LockBroken(FsError):
    """This handle's lock was broken by an administrator: its writes are refused."""

    errno = _errno.EIO


class QuotaExceeded(FsError):
    """The namespace's quota would be passed."""

    errno = _errno.EDQUOT


class NoSpace(FsError):
    """No space left on any pool."""

    errno = _errno.ENOSPC


# --- storage ----------------------------------------------------------------------


class StorageError(RepfsError):
    """A pool or the replicated store failed; callers see EIO."""

    errno = _errno.EIO


class ObjectNotFound(StorageError):
    """The object does not exist on this pool."""


class CorruptObject(StorageError):
    """An object failed authentication: truncated, bit-flipped, swapped or foreign."""


class PoolUnavailable(StorageError):
    """A pool could not be reached or answered with an error."""


class PoolFull(StorageError):
    """A pool has no room for new objects."""

    errno = _errno.ENOSPC


class QuorumNotReached(StorageError):
    """Fewer pools than the write quorum stored an object."""


class MetaNoSpace(QuorumNotReached):
    """A metadata object (journal segment, snapshot, lease) found every pool full. A
    storage error, so the services that store metadata retry it; ENOSPC for an fsync
    that waits for it."""

    errno = _errno.ENOSPC


class ReadFailed(StorageError):
    """No replica of a block could be read."""


class UnmountIncomplete(RepfsError):
    """Unmounted, but some blocks could not be stored; they wait in the cache for the next mount."""

    errno = _errno.EIO


# --- set-up and configuration -----------------------------------------------------


class SetupError(RepfsError):
    """A problem with configuration, keys or pools found before mounting."""

    errno = _errno.EINVAL


class ConfigError(SetupError):
    """The configuration is invalid."""


class WrongPassphrase(SetupError):
    """The passphrase or key file does not unlock this filesystem."""

    errno = _errno.EACCES


class ForeignPool(SetupError):
    """A pool holds no superblock or one of another filesystem."""


class FilesystemExists(SetupError):
    """A filesystem already exists where mkfs was asked to create one."""

    errno = _errno.EEXIST


# --- requests to the running filesystem (the control plane) ----------------------
# Transports map them: HTTP 400 / 409 / 404 / 503, a one-line message and exit code at the CLI.


class RequestError(RepfsError):
    """A request to change the running filesystem that cannot be done as asked."""


class InvalidRequest(RequestError):
    """A request with a bad or missing value."""

    errno = _errno.EINVAL


class RequestRefused(RequestError):
    """A request that cannot be done in the filesystem's present state."""

    errno = _errno.EBUSY


class UnknownName(RequestError):
    """A request about a pool (or other named thing) that does not exist."""

    errno = _errno.ENOENT


class PoolNotAnswering(RequestError):
    """A request that needs a pool which does not answer now; it may be asked again."""

    errno = _errno.EAGAIN
