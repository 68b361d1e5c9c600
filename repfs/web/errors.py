"""Every error of the API in one place: an exception with its HTTP status and a short
code, from the errno the mount answered or the status the user socket did."""

from __future__ import annotations

import errno

from starlette.responses import JSONResponse

from repfs.admin.client import AdminError

# errno of a file call on the mount → (status, code)
ERRNO_STATUS: dict[int, tuple[int, str]] = {
    errno.ENOENT: (404, "not_found"),
    errno.ENOTDIR: (404, "not_found"),
    errno.EACCES: (403, "forbidden"),
    errno.EPERM: (403, "forbidden"),
    errno.EROFS: (403, "forbidden"),
    errno.EEXIST: (409, "exists"),
    errno.ENOTEMPTY: (409, "not_empty"),
    errno.EISDIR: (409, "is_a_folder"),
    errno.ELOOP: (409, "is_a_link"),
    errno.EXDEV: (409, "cross_namespace"),
    errno.EBUSY: (423, "locked"),
    errno.EDQUOT: (507, "quota_exceeded"),
    errno.ENOSPC: (507, "no_space"),
    errno.EFBIG: (413, "too_large"),
    errno.ENAMETOOLONG: (400, "bad_request"),
    errno.EINVAL: (400, "bad_request"),
    errno.EIO: (503, "unavailable"),
    errno.ENOTCONN: (503, "unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.code, "message": self.message}, status_code=self.status)


def from_os(exc: OSError) -> ApiError:
    status, code = ERRNO_STATUS.get(exc.errno or 0, (500, "error"))
    message = exc.strerror or str(exc)
    if exc.errno == errno.EDQUOT:
        message = "the quota of the namespace would be exceeded; nothing was stored"
    return ApiError(status, code, message)


def from_admin(exc: AdminError) -> ApiError:
    codes = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict", 503: "unavailable"}
    return ApiError(exc.status, codes.get(exc.status, "error"), exc.message)
