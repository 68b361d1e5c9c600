"""Accounts: the people who share a filesystem, each with a namespace `/<name>/`.

An account maps to one local uid, the uid the kernel reports for that person's
processes; its name is the uid's name in the host's passwd database (checked at mount,
`check_host`). Accounts are filesystem metadata: two LMDB databases (`accounts` by name,
`account_uids` by uid), journaled and in snapshots like the rest, so `repfs recover`
brings them back. Passwords are kept as argon2id hashes only, and never leave this
module in a reply or a log line (`Account.public`).

`AccountBook` is the daemon's in-memory view of who is refused (disabled or expired):
the filesystem core asks it on every operation a caller makes, without a read of LMDB.

Record format (value of `accounts`): UTF-8 JSON, `{"v": 1, "name", "email", "uid",
"gid", "created", "valid_until", "disabled", "password"}`; `valid_until` and `created`
are unix seconds (0: none), `password` an argon2 hash or "" (none set).
"""

from __future__ import annotations

import calendar
import errno as errnos
import hashlib
import json
import pwd
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import argon2

from repfs.errors import FsError, SetupError
from repfs.fs import acl, ingest, retention
from repfs.fs import namespace as ns
from repfs.fs.access import ROOT
from repfs.meta import schema as s
from repfs.meta.records import Inode
from repfs.meta.store import Txn

RECORD_VERSION = 2  # 2 adds password_temporary (version 1 records read with it false)
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # what Debian's useradd takes by default
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NAMESPACE_MODE = 0o700
# what a user creates in their namespace is theirs alone unless they open it up
NAMESPACE_DEFAULT_ACL = acl.Acl(
    (
        acl.Entry(acl.USER_OBJ, acl.UNDEFINED_ID, 7),
        acl.Entry(acl.GROUP_OBJ, acl.UNDEFINED_ID, 0),
        acl.Entry(acl.OTHER, acl.UNDEFINED_ID, 0),
    )
)
_HASHER = argon2.PasswordHasher()  # argon2id, the library's current defaults


class AccountError(FsError):
    """An account operation that cannot be done (the message says why)."""


class AccountInvalid(AccountError):
    """Bad input for an account: name, email, uid, date, password."""


class AccountExists(AccountError):
    """The name, email or uid belongs to another account."""


class AccountUnknown(AccountError):
    """No account has that name."""


class AccountRefused(AccountError):
    """The caller may not act for that account (not its uid, or the account is refused)."""

    errno = errnos.EACCES


class NamespaceNotEmpty(AccountError):
    """The account's namespace still holds files."""


@dataclass
class Account:
    name: str
    email: str
    uid: int
    gid: int
    created: int = 0
    valid_until: int = 0  # unix seconds; 0: no end
    disabled: bool = False
    password: str = field(default="", repr=False)  # an argon2 hash, "" if none is set
    password_temporary: bool = False  # set by an administrator: to be changed at the first sign-in

    def refused(self, now: float) -> str | None:
        """Why the account may not use the filesystem now, or None."""
        if self.disabled:
            return f"account {self.name} is disabled"
        if self.valid_until and now > self.valid_until:
            return f"account {self.name} expired at {time.strftime('%Y-%m-%d', time.gmtime(self.valid_until))}"
        return None

    @property
    def password_stamp(self) -> str:
        """A value that changes whenever the password does (a digest of its hash, not the
        hash): what a login token is bound to, so a new password ends every session."""
        return hashlib.sha256(self.password.encode()).hexdigest()[:16] if self.password else ""

    def public(self) -> dict[str, Any]:
        """What a reply may show: everything but the password hash."""
        out = asdict(self)
        out["password_set"] = bool(out.pop("password"))
        return out

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> Account:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version not in (1, RECORD_VERSION):
            raise ValueError(f"account record version {version} is not known")
        return cls(**data)


# --- input ------------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise AccountInvalid(
            f"account name {name!r} is invalid: 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'"
        )


def check_email(email: str) -> None:
    if not EMAIL_RE.match(email):
        raise AccountInvalid(f"email {email!r} is not an address")


def parse_date(text: str) -> int:
    """`YYYY-MM-DD` (the end of that day, UTC) as unix seconds."""
    try:
        day = time.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise AccountInvalid(f"date {text!r}: use YYYY-MM-DD") from None
    return calendar.timegm(day) + 86399


def hash_password(password: str) -> str:
    """The argon2id hash of a password (slow on purpose: call it in a worker thread)."""
    if len(password) < 8:
        raise AccountInvalid("a password needs at least 8 characters")
    return _HASHER.hash(password)


def password_matches(account: Account, password: str) -> bool:
    """Whether `password` is the account's (slow: call it in a worker thread)."""
    if not account.password:
        return False
    try:
        return _HASHER.verify(account.password, password)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        return False


def host_uid(name: str) -> tuple[int, int] | None:
    """(uid, primary gid) of `name` in the host's passwd database, None if it has none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


# --- the records ------------------------------------------------------------------------


def get(t: Txn, name: str) -> Account | None:
    raw = t.get("accounts", name.encode())
    return Account.unpack(raw) if raw is not None else None


def get_or_fail(t: Txn, name: str) -> Account:
    account = get(t, name)
    if account is None:
        raise AccountUnknown(f"no account {name!r}")
    return account


def by_uid(t: Txn, uid: int) -> Account | None:
    name = t.get("account_uids", s.u64(uid))
    return get(t, name.decode()) if name is not None else None


def listed(t: Txn) -> list[Account]:
    return [Account.unpack(v) for _, v in t.scan("accounts", b"")]


def put(t: Txn, account: Account) -> None:
    t.put("accounts", account.name.encode(), account.pack())
    t.put("account_uids", s.u64(account.uid), account.name.encode())


def add(t: Txn, account: Account) -> Inode:
    """Record a new account and make its namespace; returns the namespace's inode."""
    check_name(account.name)
    check_email(account.email)
    if account.uid <= 0:
        raise AccountInvalid("an account needs a uid other than root's")
    check_new(t, account.name, account.email)
    holder = by_uid(t, account.uid)
    if holder is not None:
        raise AccountExists(f"uid {account.uid} belongs to account {holder.name}")
    put(t, replace(account, created=account.created or int(time.time())))
    return make_namespace(t, account)


def check_new(t: Txn, name: str, email: str) -> None:
    """AccountExists unless `name`, `email` and `/<name>` are free."""
    if get(t, name) is not None:
        raise AccountExists(f"account {name} exists")
    for other in listed(t):
        if other.email.lower() == email.lower():
            raise AccountExists(f"email {email} belongs to account {other.name}")
    if t.lookup(s.ROOT_INO, name.encode()) is not None:
        raise AccountExists(f"/{name} exists already at the top of the filesystem")


def make_namespace(t: Txn, account: Account) -> Inode:
    """`/<name>/`: the account's, mode 0700, with a default ACL that gives others nothing."""
    inode = ns.create_node(t, ROOT, s.ROOT_INO, account.name.encode(), stat.S_IFDIR | NAMESPACE_MODE)
    inode.uid, inode.gid = account.uid, account.gid
    inode.mode = stat.S_IFDIR | NAMESPACE_MODE
    t.put_inode(inode)
    acl.store(t, inode, acl.DEFAULT, NAMESPACE_DEFAULT_ACL.pack())
    t.put("namespaces", s.u64(inode.ino), account.name.encode())
    ingest.record(t, inode, inode.ino, inode.ctime_ns)
    rule = retention.default(t)
    if rule is not None:  # the rule new namespaces get
        retention.put(t, inode.ino, rule)
    return inode


def namespace_of(t: Txn, account: Account) -> Inode | None:
    ino = t.lookup(s.ROOT_INO, account.name.encode())
    return t.inode(ino) if ino is not None else None


def remove(t: Txn, name: str) -> Account:
    """Forget an account (its namespace must be gone or empty: `NamespaceNotEmpty`). Its
    directory is then an ordinary one: the caller removes it (`Filesystem.rmdir`)."""
    account = get_or_fail(t, name)
    home = namespace_of(t, account)
    if home is not None:
        if t.has_entries(home.ino):
            raise NamespaceNotEmpty(f"/{name} is not empty: remove its files first, or use --delete-files")
        t.delete("namespaces", s.u64(home.ino))
    t.delete("accounts", name.encode())
    t.delete("account_uids", s.u64(account.uid))
    return account


def check_host(accounts: Iterable[Account]) -> None:
    """Refuse (SetupError) when an account's name and uid do not match the host's passwd."""
    wrong = []
    for a in accounts:
        found = host_uid(a.name)
        if found is None:
            wrong.append(f"{a.name} (uid {a.uid}) has no passwd entry here")
        elif found[0] != a.uid:
            wrong.append(f"{a.name} is uid {a.uid} in repfs but uid {found[0]} on this host")
    if wrong:
        raise SetupError(
            "accounts do not match this host's users: "
            + "; ".join(wrong)
            + "; make the users (repfs recover --create-system-users does) or fix their uids"
        )


class AccountBook:
    """Who is refused now, by uid: the daemon's view, updated by every account change."""

    def __init__(self, accounts: Iterable[Account] = ()) -> None:
        self._by_uid: dict[int, Account] = {}
        for a in accounts:
            self.note(a)

    def note(self, account: Account) -> None:
        self._by_uid[account.uid] = account

    def forget(self, account: Account) -> None:
        self._by_uid.pop(account.uid, None)

    def refused(self, uid: int) -> str | None:
        """Why `uid`'s account may not use the filesystem now (None: it may, or no account)."""
        account = self._by_uid.get(uid)
        return account.refused(time.time()) if account is not None else None

    def name_of(self, uid: int) -> str | None:
        account = self._by_uid.get(uid)
        return account.name if account is not None else None

    def __len__(self) -> int:
        return len(self._by_uid)

    def refused_count(self) -> int:
        """How many accounts are disabled or expired now."""
        now = time.time()
        return sum(1 for a in self._by_uid.values() if a.refused(now) is not None)
