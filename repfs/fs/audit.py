"""The audit log: one JSON record per file access, whoever makes it (seed: every access
is logged via syslog). With `--audit`, each open (read or write), create, mkdir, mknod,
symlink, link, unlink, rmdir, rename, chmod, chown, ACL change and xattr change on the
mount gives one record, and so does each account action on the admin socket:

    {"time": "2026-12-01T12:00:00.123Z", "account": "alice", "uid": 1001, "op": "open",
     "path": "/alice/notes", "mode": "r", "result": "ok"}

`account` is null for a uid with no account; `path` is the name the operation used (for
an open, the file's first name; `<unlinked>/INO` for a file with none left); `result` is
"ok" or the errno's name. Never file contents, never secrets. Logger `repfs.audit`:
to syslog (facility authpriv) with `--log syslog`, else the log file.
"""

from __future__ import annotations

import contextlib
import datetime
import errno as errnos
import json
import logging
from collections.abc import Iterator
from typing import Any

from repfs.fs.accounts import AccountBook
from repfs.fs.paths import child_path, path_of
from repfs.meta.store import MetaStore

audit_log = logging.getLogger("repfs.audit")


class Audit:
    def __init__(self, meta: MetaStore, accounts: AccountBook, *, enabled: bool = False) -> None:
        self.meta = meta
        self.accounts = accounts
        self.enabled = enabled
        self.records = 0

    @contextlib.contextmanager
    def record(
        self,
        uid: int,
        op: str,
        *,
        ino: int | None = None,
        parent: int | None = None,
        name: bytes | None = None,
        new_parent: int | None = None,
        new_name: bytes | None = None,
        **extra: Any,
    ) -> Iterator[None]:
        """One record for the operation run in the `with` body, with its outcome."""
        if not self.enabled:
            yield
            return
        with self.meta.read() as t:  # before the body: an unlink's or rename's name is still there
            if parent is not None and name is not None:
                path = child_path(t, parent, name)
            elif ino is not None:
                path = path_of(t, ino)
            else:
                path = None
            new = child_path(t, new_parent, new_name) if new_parent is not None and new_name is not None else None
        result = "ok"
        try:
            yield
        except BaseException as exc:
            code = getattr(exc, "errno", None)
            result = errnos.errorcode.get(code, "error") if isinstance(code, int) else "error"
            raise
        finally:
            self.write(uid, op, path, result, new_path=new, **extra)

    def write(self, uid: int, op: str, path: str | None, result: str = "ok", **extra: Any) -> None:
        """A record for an action that is not a file operation (an admin socket call)."""
        if not self.enabled:
            return
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = {"time": now, "account": self.accounts.name_of(uid), "uid": uid, "op": op, "path": path}
        entry.update({k: v for k, v in extra.items() if v is not None})
        entry["result"] = result
        self.records += 1
        audit_log.info("%s", json.dumps(entry, sort_keys=False))
