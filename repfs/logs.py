"""Where repfs logs, for every command: standard error, a file, or syslog; and the audit log.

`--log PATH` appends to a file (reopened when logrotate moves it away, and on SIGHUP for
a mount); `--log syslog` sends records to the local syslog (/dev/log, facility daemon,
tagged `repfs[PID]`; audit records go to facility authpriv). `--audit` logs every open,
create, delete and rename with the caller (logger `repfs.audit`, see repfs/fuse/ops.py).
Nothing logged ever holds a key, a passphrase or file contents.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from repfs.errors import ConfigError

SYSLOG = "syslog"
SYSLOG_SOCKET = "/dev/log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _syslog(facility: int) -> logging.Handler:
    if not os.path.exists(SYSLOG_SOCKET):
        raise ConfigError(f"--log syslog: there is no syslog socket at {SYSLOG_SOCKET} (is a syslog daemon running?)")
    handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET, facility=facility)
    handler.ident = f"repfs[{os.getpid()}]: "
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return handler


def _file(path: str) -> logging.Handler:
    try:
        # WatchedFileHandler opens the file again when it was moved or deleted (logrotate).
        return logging.handlers.WatchedFileHandler(path)
    except OSError as exc:
        raise ConfigError(f"--log {path}: cannot open the log file: {exc.strerror}") from None


def setup(destination: str | None, *, debug: bool = False, audit: bool = False, level: int = logging.INFO) -> None:
    """Log to `destination` (a file, `syslog`, or standard error when None)."""
    if destination == SYSLOG:
        handler = _syslog(logging.handlers.SysLogHandler.LOG_DAEMON)
    else:
        handler = _file(destination) if destination else logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else level)
    logging.getLogger("pyfuse3").setLevel(logging.INFO)
    audit_log = logging.getLogger("repfs.audit")
    audit_log.setLevel(logging.INFO if audit else logging.WARNING)
    if audit and destination == SYSLOG:
        audit_log.handlers[:] = [_syslog(logging.handlers.SysLogHandler.LOG_AUTHPRIV)]
        audit_log.propagate = False


def reopen() -> None:
    """Open every log file again (SIGHUP): lines go to the file now at the path."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                handler._statstream()
            finally:
                handler.release()
