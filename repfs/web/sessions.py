"""Sessions of the API: bearer tokens given at login, and the brake on guessed passwords.

A token is 32 random bytes (URL-safe base64); only its SHA-256 is kept, in an SQLite file
of the web process's state folder, so tokens survive a restart of `repfs web` and a copy
of the file gives nobody a token. A token names its account and the account's password
stamp at login (`Account.password_stamp`): every request checks the account as it is
now, so a new password, a disabled or expired account ends the session at once; logout
deletes it; it expires after `ttl` seconds.

Failed logins for a name slow down its next attempt (1 s, 2 s, 4 s ... up to 60 s) and
after `LOCK_AFTER` failures in a row lock the name out for `LOCK_SECONDS`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from repfs.web.statedb import state_db

DEFAULT_TTL = 8 * 3600
LOCK_AFTER = 10
LOCK_SECONDS = 900
MAX_DELAY = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    digest BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    stamp TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_account ON sessions(account);
"""


@dataclass(frozen=True)
class Session:
    account: str
    stamp: str
    created: float
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    def __init__(self, path: Path, *, ttl: float = DEFAULT_TTL) -> None:
        self.db = state_db(path, _SCHEMA)
        self.ttl = ttl

    def open(self, account: str, stamp: str) -> tuple[str, Session]:
        token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        now = time.time()
        session = Session(account, stamp, now, now + self.ttl)
        row = (_digest(token), account, stamp, session.created, session.expires)
        self.db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", row)
        return token, session

    def get(self, token: str) -> Session | None:
        row = self.db.execute(
            "SELECT account, stamp, created, expires FROM sessions WHERE digest = ?", (_digest(token),)
        ).fetchone()
        if row is None:
            return None
        session = Session(*row)
        if session.expires < time.time():
            self.close(token)
            return None
        return session

    def close(self, token: str) -> bool:
        return self.db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(token),)).rowcount > 0

    def close_all(self, account: str) -> int:
        return self.db.execute("DELETE FROM sessions WHERE account = ?", (account,)).rowcount

    def prune(self) -> int:
        return self.db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),)).rowcount


class LoginBrake:
    """How long the next login attempt for a name must wait, and lock-outs."""

    def __init__(self) -> None:
        self._fails: dict[str, tuple[int, float]] = {}  # name → (failures in a row, last)

    def wait(self, login: str) -> float:
        """Seconds to wait before checking `login`'s password; inf while locked out."""
        fails, last = self._fails.get(login.lower(), (0, 0.0))
        if fails >= LOCK_AFTER:
            if time.time() - last < LOCK_SECONDS:
                return float("inf")
            self._fails.pop(login.lower(), None)
            return 0.0
        return 0.0 if fails == 0 else max(0.0, min(MAX_DELAY, 2.0 ** (fails - 1)) - (time.time() - last))

    def failed(self, login: str) -> int:
        fails, _ = self._fails.get(login.lower(), (0, 0.0))
        if len(self._fails) > 100_000:  # bounded: forget the oldest half
            for key in sorted(self._fails, key=lambda k: self._fails[k][1])[: len(self._fails) // 2]:
                del self._fails[key]
        self._fails[login.lower()] = (fails + 1, time.time())
        return fails + 1

    def succeeded(self, login: str) -> None:
        self._fails.pop(login.lower(), None)
