"""Account operations of a mounted filesystem: add, list, show, set, disable, enable,
remove, passwd, and who a user-socket caller speaks for. Typed results; the admin socket,
the user socket (and later the web) are transports over these and add no rules of their
own.

Every change is one metadata transaction (so it is journaled like any other), then the
daemon's `AccountBook` learns it at once: a disabled account is refused at the caller's
next operation.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace

import trio
import trio.lowlevel

from repfs.errors import FsError, InvalidRequest
from repfs.fs import accounts as acc
from repfs.fs import apikeys, clientca, holds, quota
from repfs.fs import shares as sh
from repfs.fs.access import ROOT
from repfs.fs.accounts import Account, AccountBook, AccountError, AccountInvalid, AccountRefused, AccountUnknown
from repfs.fs.core import Filesystem
from repfs.fs.kernelcache import KernelCacheQueue
from repfs.fs.sharemanager import ShareManager
from repfs.fs.welcome import Welcome
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

USERADD_TIMEOUT = 30.0  # seconds
DELETE_BATCH = 256  # names deleted between checkpoints


class AccountManager:
    def __init__(
        self, meta: MetaStore, fs: Filesystem, book: AccountBook, kernel: KernelCacheQueue, shares: ShareManager
    ) -> None:
        self.meta = meta
        self.fs = fs
        self.book = book
        self.kernel = kernel
        self.shares = shares
        # argon2 takes ~64 MiB and a CPU for a moment: one hash at a time, whoever asks
        # (anyone may ask the user socket), on threads of its own
        self._hashing = trio.CapacityLimiter(1)
        self._decoy_account: Account | None = None
        self.welcome = Welcome(meta, self._hashing)
        self.not_on_host: list[str] = []  # as `check_host` last found

    def reload(self) -> None:
        """Learn every account from the metadata (after the journal's catch-up at mount)."""
        for account in self.list():
            self.book.note(account)

    async def check_host(self) -> list[str]:
        """Accounts whose name and uid no longer match the host's passwd (changed since
        mount); asked in a worker thread (passwd may be a network directory), and kept in
        `not_on_host` for the status snapshot."""
        accounts = self.list()

        def mismatched() -> list[str]:
            return [a.name for a in accounts if (acc.host_uid(a.name) or (None,))[0] != a.uid]

        self.not_on_host = await trio.to_thread.run_sync(mismatched)
        return self.not_on_host

    def list(self) -> list[Account]:
        with self.meta.read() as t:
            return acc.listed(t)

    def show(self, name: str) -> Account:
        with self.meta.read() as t:
            return acc.get_or_fail(t, name)

    async def add(
        self,
        name: str,
        email: str,
        *,
        uid: int | None = None,
        create_system_user: bool = False,
        valid_until: int = 0,
        password: str | None = None,
        password_temporary: bool = False,
    ) -> Account:
        """A new account and its namespace. Its uid is `uid` (whose passwd name must be
        `name`), or the passwd entry of `name`, or a new system user (`create_system_user`)."""
        acc.check_name(name)
        acc.check_email(email)
        with self.meta.read() as t:  # before a host user is made for it
            acc.check_new(t, name, email)
        found = acc.host_uid(name)
        if create_system_user:
            if found is not None:
                raise AccountInvalid(f"{name} is a user of this host already (uid {found[0]}); leave out the option")
            found = await trio.to_thread.run_sync(make_host_user, name, None)
        if found is None:
            raise AccountInvalid(f"{name} is not a user of this host: give --create-system-user to make one")
        if uid is not None and uid != found[0]:
            raise AccountInvalid(f"{name} is uid {found[0]} on this host, not {uid}")
        hashed = ""
        if password is not None:
            hashed = await trio.to_thread.run_sync(acc.hash_password, password, limiter=self._hashing)
        account = Account(name, email, found[0], found[1], valid_until=valid_until, password=hashed,
                          password_temporary=bool(hashed) and password_temporary)  # fmt: skip
        with self.meta.write() as t:
            acc.add(t, account)
            account = acc.get_or_fail(t, name)
        self.book.note(account)
        self.kernel.forget_entry(s.ROOT_INO, name.encode())  # the kernel may remember it missing
        log.info("account %s added (uid %d, namespace /%s)", name, account.uid, name)
        return account

    def usage(self, account: Account) -> tuple[quota.Usage, quota.Limits]:
        """What the account's namespace holds (the defined unit, counted live), and its limits."""
        with self.meta.read() as t:
            home = acc.namespace_of(t, account)
            used = quota.usage(t, home.ino) if home is not None else quota.Usage(0, 0)
            return used, quota.limits_of(t, account.name)

    def set_limits(self, name: str, limits: quota.Limits) -> None:
        with self.meta.write() as t:
            home = acc.namespace_of(t, acc.get_or_fail(t, name))
            quota.set_limits(t, name, limits)
            over = home is not None and limits.evict_bytes and quota.usage(t, home.ino).bytes > limits.evict_bytes
        log.info("account %s: quota %s", name, limits)
        if over and home is not None and self.fs.on_over_size is not None:  # the evictor starts now
            self.fs.on_over_size(home.ino)

    def update(self, name: str, *, email: str | None = None, valid_until: int | None = None) -> Account:
        if email is not None:
            acc.check_email(email)
        with self.meta.write() as t:
            account = acc.get_or_fail(t, name)
            if email is not None:
                if any(o.email.lower() == email.lower() and o.name != name for o in acc.listed(t)):
                    raise acc.AccountExists(f"email {email} belongs to another account")
                account = replace(account, email=email)
            if valid_until is not None:
                account = replace(account, valid_until=valid_until)
            acc.put(t, account)
        self.book.note(account)
        log.info("account %s changed", name)
        return account

    def set_disabled(self, name: str, disabled: bool) -> Account:
        with self.meta.write() as t:
            account = replace(acc.get_or_fail(t, name), disabled=disabled)
            acc.put(t, account)
        self.book.note(account)
        log.warning("account %s %s", name, "disabled" if disabled else "enabled")
        return account

    def speaking_for(self, uid: int, act_as: str | None = None) -> Account:
        """The account a caller of the user socket speaks for: the one its uid maps to; root
        may name another (`act_as`), nobody else may. A disabled or expired account is refused."""
        if act_as is not None and uid != 0:
            raise AccountRefused("only root may act for another account")
        with self.meta.read() as t:
            account = acc.get_or_fail(t, act_as) if act_as is not None else acc.by_uid(t, uid)
        if account is None:
            raise AccountRefused(f"uid {uid} has no account on this filesystem")
        why = account.refused(time.time())
        if why is not None:
            raise AccountRefused(why)
        return account

    async def login(self, login: str, password: str) -> Account:
        """The account whose name or email is `login`, if `password` is its password and
        it may use the filesystem now. One message for every failure: a caller learns
        nothing of which names exist."""
        with self.meta.read() as t:
            account = acc.get(t, login)
            if account is None:
                account = next((a for a in acc.listed(t) if a.email.lower() == login.lower()), None)
        # an unknown name costs a hash like a known one: the answer's time tells nothing
        checked = account if account is not None else self._decoy()
        matches = await trio.to_thread.run_sync(acc.password_matches, checked, password, limiter=self._hashing)
        if account is None or not matches:
            raise AccountRefused("wrong account name or password")
        why = account.refused(time.time())
        if why is not None:
            raise AccountRefused(why)
        return account

    # --- API keys -----------------------------------------------------------------------
    def add_key(
        self, name: str, paths: Sequence[str], ops: Sequence[str], *, label: str = "", expires: float = 0
    ) -> tuple[apikeys.ApiKey, str]:
        with self.meta.write() as t:
            acc.get_or_fail(t, name)
            key, token = apikeys.make(t, name, [*paths], [*ops], label=label, expires=expires)
        log.info("account %s: API key %s made for %s (%s)", name, key.id, ", ".join(key.paths), ",".join(key.ops))
        return key, token

    def add_cert(
        self, name: str, public_key_pem: str, *, days: int, paths: Sequence[str] = ("/",),
        ops: Sequence[str] = apikeys.OPS, label: str = "",
    ) -> tuple[apikeys.ApiKey, str, str]:
        """A client certificate of `name` for a public key: (key record, certificate PEM, CA PEM)."""
        with self.meta.write() as t:
            acc.get_or_fail(t, name)
            ca = clientca.load_or_make(t, (t.get("meta", s.META_FS_UUID) or b"").decode())
            key_id = apikeys.new_id()
            cert = clientca.sign(ca, name, key_id, public_key_pem, days)
            key = apikeys.make_cert(t, name, key_id, clientca.digest(cert), [*paths], [*ops], label=label,
                                    expires=cert.not_valid_after_utc.timestamp())  # fmt: skip
        log.info("account %s: client certificate %s made, valid until %s", name, key_id,
                 cert.not_valid_after_utc.date().isoformat())  # fmt: skip
        return key, clientca.pem_of(cert), ca.pem

    def client_ca(self) -> str:
        """The CA certificate (PEM) `repfs web` trusts for client certificates; made if none."""
        with self.meta.read() as t:
            raw = t.get("meta", s.META_CLIENT_CA)
        if raw is not None:
            return clientca.ClientCa.unpack(raw).pem
        with self.meta.write() as t:
            return clientca.load_or_make(t, (t.get("meta", s.META_FS_UUID) or b"").decode()).pem

    def check_cert(self, pem: str) -> tuple[Account, apikeys.ApiKey]:
        """The account and key of a client certificate a TLS handshake verified, if both may
        be used now (the certificate is checked against the CA again here)."""
        with self.meta.read() as t:
            raw = t.get("meta", s.META_CLIENT_CA)
            if raw is None:
                raise AccountRefused("no client certificate was ever made")
            try:
                who = clientca.presented(clientca.ClientCa.unpack(raw), pem)
            except InvalidRequest as exc:
                raise AccountRefused(str(exc)) from None
            key = apikeys.check_cert(t, who.key_id, who.sha256)
            account = acc.get(t, key.account) if key is not None else None
        if key is None or account is None or account.name != who.account:
            raise AccountRefused("the client certificate is not valid (unknown, expired or revoked)")
        why = account.refused(time.time())
        if why is not None:
            raise AccountRefused(why)
        return account, key

    def keys(self, name: str) -> Sequence[apikeys.ApiKey]:
        with self.meta.read() as t:
            acc.get_or_fail(t, name)
            return apikeys.of_account(t, name)

    def remove_key(self, name: str, key_id: str) -> apikeys.ApiKey:
        with self.meta.write() as t:
            acc.get_or_fail(t, name)
            key = apikeys.remove(t, name, key_id)
        if key is None:
            raise AccountUnknown(f"account {name} has no API key {key_id}")
        log.info("account %s: API key %s removed", name, key_id)
        return key

    def check_key(self, token: str) -> tuple[Account, apikeys.ApiKey]:
        """The account and key of an API key token, if both may be used now."""
        with self.meta.read() as t:
            key = apikeys.check(t, token)
            account = acc.get(t, key.account) if key is not None else None
        if key is None or account is None:
            raise AccountRefused("the API key is not valid (unknown, expired or removed)")
        why = account.refused(time.time())
        if why is not None:
            raise AccountRefused(why)
        return account, key

    def _decoy(self) -> Account:
        if self._decoy_account is None:
            self._decoy_account = Account("", "", 0, 0, password=acc.hash_password(secrets.token_hex(16)))
        return self._decoy_account

    async def change_own_password(self, account: Account, old: str | None, new: str, *, checked: bool) -> None:
        """An account's password changed by its person: the old one must match when one is
        set, unless the caller is `checked` already (root acting for the account)."""
        if account.password and not checked:
            if old is None:
                raise AccountInvalid("give the current password (old_password) as well")
            if not await trio.to_thread.run_sync(acc.password_matches, account, old, limiter=self._hashing):
                raise AccountRefused(f"account {account.name}: the current password is not right")
        await self.set_password(account.name, new)

    async def set_password(self, name: str, password: str, *, temporary: bool = False) -> None:
        """A new password; `temporary` (an administrator's choice) asks the account to
        change it at its next sign-in (`repfs web` lets it do nothing else until then)."""
        self.show(name)  # an unknown name fails before the slow hash
        hashed = await trio.to_thread.run_sync(acc.hash_password, password, limiter=self._hashing)
        with self.meta.write() as t:
            acc.put(t, replace(acc.get_or_fail(t, name), password=hashed, password_temporary=temporary))
        log.info("account %s: password changed%s", name, " (temporary)" if temporary else "")

    async def remove(self, name: str, *, delete_files: bool = False) -> Account:
        """Forget an account; its namespace must be empty unless `delete_files`, which
        deletes every file in it by the normal unlink path (the account is refused from
        the start, and the daemon goes on serving meanwhile)."""
        if delete_files:
            with self.meta.read() as t:
                home = acc.namespace_of(t, acc.get_or_fail(t, name))
                held = holds.held_below(t, home.ino) if home is not None else []
            if held:
                raise AccountError(f"{len(held)} items in /{name} are on legal hold: lift the holds first")
            account = self.set_disabled(name, True)  # nothing new is made while it is emptied
            with self.meta.read() as t:
                home = acc.namespace_of(t, account)
            if home is not None:
                await self._delete_tree(home.ino)
        with self.meta.write() as t:
            home = acc.namespace_of(t, acc.get_or_fail(t, name))
            account = acc.remove(t, name)
            quota.set_limits(t, name, quota.NO_LIMITS)
            if home is not None:
                quota.forget(t, home.ino)
            apikeys.forget_account(t, name)
            given = [share.ino for share in sh.of_grantee(t, account.uid)]
            sh.forget_grantee(t, account.uid)  # what it was given goes with it
        if home is not None:  # an ordinary empty directory now: removed like any other
            self.fs.rmdir(ROOT, s.ROOT_INO, name.encode())
        self.book.forget(account)
        self.kernel.forget_entry(s.ROOT_INO, name.encode())
        if home is not None:
            self.kernel.forget_inode(home.ino)
        await self.shares.forget_items(given)
        log.warning("account %s removed%s", name, " with its files" if delete_files else "")
        return account

    async def _delete_tree(self, top: int) -> None:
        """Delete everything below directory `top`, depth first without recursion, a batch
        at a time with a checkpoint between batches (FUSE requests and heartbeats go on)."""
        stack = [top]
        while stack:
            ino = stack[-1]
            with self.meta.read() as t:
                batch = [(entry, child, t.inode(child).is_dir) for _, entry, child in
                         itertools.islice(t.entries_from(ino, 0), DELETE_BATCH)]  # fmt: skip
            if not batch:
                stack.pop()
                if stack:  # an emptied subdirectory: remove it from its parent
                    with self.meta.read() as t:
                        first = next(t.links_of(ino), None)
                    if first is not None:
                        self._delete_one(first[0], first[1], is_dir=True)
                continue
            for entry, child, is_dir in batch:
                if is_dir:
                    with self.meta.read() as t:
                        empty = not t.has_entries(child)
                    if not empty:
                        stack.append(child)
                        break
                self._delete_one(ino, entry, is_dir=is_dir)
            await trio.lowlevel.checkpoint()  # FUSE requests, heartbeats and the journal go on

    def _delete_one(self, parent: int, entry: bytes, *, is_dir: bool) -> None:
        try:
            if is_dir:
                self.fs.rmdir(ROOT, parent, entry)
            else:
                self.fs.unlink(ROOT, parent, entry)
        except FsError as exc:
            raise AccountError(f"cannot delete {entry.decode(errors='replace')!r}: {exc}") from None


def make_host_user(name: str, uid: int | None) -> tuple[int, int]:
    """Make a host user for an account (with `uid`, or the next free one): no home
    directory, no login shell, no password of the host (`*`: none matches, yet the account
    is not locked, so sshd lets it log in with a key for the sftp recipe). Returns its
    (uid, gid)."""
    with_uid = ["--uid", str(uid)] if uid is not None else []
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--password", "*", "--user-group",
             *with_uid, name],
            check=True, capture_output=True, text=True, timeout=USERADD_TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except FileNotFoundError:
        raise AccountInvalid("useradd is not installed here (Debian: the passwd package)") from None
    except subprocess.CalledProcessError as exc:
        raise AccountInvalid(f"useradd {name} failed: {exc.stderr.strip() or exc.returncode}") from None
    found = acc.host_uid(name)
    if found is None:
        raise AccountInvalid(f"useradd {name} made no passwd entry")
    log.info("made host user %s (uid %d)", name, found[0])
    return found
