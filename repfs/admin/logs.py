"""Where a mount logs: standard error, a file, or syslog; and the audit log.

`--log syslog` sends records to the local syslog (/dev/log, facility daemon, tagged
`repfs[PID]`; the audit records go to facility authpriv). `--audit` logs every open,
create, delete and rename with the caller's uid (logger `repfs.audit`, see
repfs/fuse/ops.py). Nothing logged ever holds a key, a passphrase or file contents.
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


def setup(destination: str | None, *, debug: bool = False, audit: bool = False) -> None:
    """Log to `destination` (a file, `syslog`, or standard error when None)."""
    if destination == SYSLOG:
        handler = _syslog(logging.handlers.SysLogHandler.LOG_DAEMON)
    else:
        handler = logging.FileHandler(destination) if destination else logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("pyfuse3").setLevel(logging.INFO)
    audit_log = logging.getLogger("repfs.audit")
    audit_log.setLevel(logging.INFO if audit else logging.WARNING)
    if audit and destination == SYSLOG:
        audit_log.handlers[:] = [_syslog(logging.handlers.SysLogHandler.LOG_AUTHPRIV)]
        audit_log.propagate = False
