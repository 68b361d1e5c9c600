"""API keys: long-lived credentials an account gives an application server, scoped to
paths and operations (seed 002: "API keys for service-to-service calls").

A key is `rk_ID_SECRET`; repfs keeps its ID and the SHA-256 of the secret, never the
secret (it is shown once, when made). A key acts as its account, and only inside its
scope: `paths` (folders relative to the root, and everything in them) and `ops` (`read`:
list, stat, download; `write`: upload, make folders, move; `delete`). It ends when it
expires, when it is removed (`repfs-admin users keys remove`), and with its account
(disabled, expired or removed). Keys are metadata like the rest: journaled, recovered.

A client certificate (`repfs-admin users cert`, signed by `fs.clientca`) is a key of kind
`cert`: its ID is in the certificate's subject and its digest is the SHA-256 of the whole
certificate, so only that certificate, presented in a TLS handshake, is that key; it is
listed and revoked like the others. A welcome link (`fs.welcome`) is a key of kind
`setup`: `rs_ID_SECRET`, good once, for setting the account's password, nothing else.
Record version 2 adds `kind`; version 1 records are tokens.

| database | key | value |
|---|---|---|
| api_keys | key id (ASCII) | `ApiKey` (versioned JSON) |
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field

from repfs.errors import InvalidRequest
from repfs.meta.store import Txn

RECORD_VERSION = 2
KINDS = ("token", "cert", "setup")
SETUP_PREFIX = "rs_"
OPS = ("read", "write", "delete")
PREFIX = "rk_"
MAX_KEYS = 100  # per account


@dataclass(frozen=True)
class ApiKey:
    id: str
    account: str
    digest: str  # hex SHA-256 of the secret
    paths: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    label: str = ""
    created: float = 0.0
    expires: float = 0.0  # unix time; 0: never
    kind: str = "token"  # or "cert": digest is the certificate's SHA-256

    def pack(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> ApiKey:
        data = json.loads(raw)
        version = data.pop("v", None)
        if version not in (1, RECORD_VERSION):
            raise ValueError(f"API key record version {version} is not known")
        if data.get("kind", "token") not in KINDS:
            raise ValueError(f"API key kind {data['kind']!r} is not known")
        return cls(**data)

    def public(self) -> dict[str, object]:
        """What an answer may show: everything but the digest."""
        out = asdict(self)
        del out["digest"]
        return out

    def allows(self, op: str, path: str) -> bool:
        """Whether the key may do `op` on `path` (normalized: `/a/b`)."""
        if op not in self.ops:
            return False
        return any(path == p or path.startswith(p.rstrip("/") + "/") or p == "/" for p in self.paths)


def _normal(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidRequest("'..' is not allowed in a key's path")
    return "/" + "/".join(parts)


def _checked_scope(t: Txn, account: str, paths: list[str], ops: list[str], expires: float) -> None:
    if not paths:
        raise InvalidRequest("a key needs at least one path (a folder it may use; / for all)")
    bad = sorted(set(ops) - set(OPS))
    if bad or not ops:
        raise InvalidRequest(f"ops are {', '.join(OPS)}; got {', '.join(bad) or 'none'}")
    if expires and expires < time.time():
        raise InvalidRequest("the key would have expired already")
    if len(of_account(t, account)) >= MAX_KEYS:
        raise InvalidRequest(f"an account has at most {MAX_KEYS} keys: remove one first")


def new_id() -> str:
    return secrets.token_hex(8)


def make(
    t: Txn, account: str, paths: list[str], ops: list[str], *, label: str = "", expires: float = 0
) -> tuple[ApiKey, str]:
    """A new key of `account` and its token (shown once)."""
    _checked_scope(t, account, paths, ops, expires)
    key_id, secret = new_id(), secrets.token_urlsafe(32)
    key = ApiKey(key_id, account, hashlib.sha256(secret.encode()).hexdigest(), sorted({_normal(p) for p in paths}),
                 [op for op in OPS if op in ops], label, time.time(), expires)  # fmt: skip
    t.put("api_keys", key_id.encode(), key.pack())
    return key, f"{PREFIX}{key_id}_{secret}"


def make_cert(
    t: Txn, account: str, key_id: str, cert_sha256: str, paths: list[str], ops: list[str], *, label: str,
    expires: float,
) -> ApiKey:
    """The key record of a client certificate `key_id` whose DER has SHA-256 `cert_sha256`."""
    _checked_scope(t, account, paths, ops, expires)
    key = ApiKey(key_id, account, cert_sha256, sorted({_normal(p) for p in paths}), [op for op in OPS if op in ops],
                 label, time.time(), expires, "cert")  # fmt: skip
    t.put("api_keys", key_id.encode(), key.pack())
    return key


def make_setup(t: Txn, account: str, ttl: float) -> tuple[ApiKey, str]:
    """A one-time link token that sets `account`'s password, valid `ttl` seconds; the
    account's earlier ones end."""
    for old in of_account(t, account):
        if old.kind == "setup":
            t.delete("api_keys", old.id.encode())
    key_id, secret = new_id(), secrets.token_urlsafe(32)
    now = time.time()
    key = ApiKey(key_id, account, hashlib.sha256(secret.encode()).hexdigest(), [], [], "welcome link", now, now + ttl,
                 "setup")  # fmt: skip
    t.put("api_keys", key_id.encode(), key.pack())
    return key, f"{SETUP_PREFIX}{key_id}_{secret}"


def setup_key(t: Txn, token: str) -> ApiKey | None:
    """The setup key a link token is, if it is one and has not expired."""
    if not token.startswith(SETUP_PREFIX):
        return None
    key_id, _, secret = token[len(SETUP_PREFIX) :].partition("_")
    raw = t.get("api_keys", key_id.encode()) if key_id and secret else None
    return _valid(ApiKey.unpack(raw), "setup", hashlib.sha256(secret.encode()).hexdigest()) if raw else None


def redeem_setup(t: Txn, token: str) -> ApiKey | None:
    """The setup key a link token is, removed (it is good once); None if it is none."""
    key = setup_key(t, token)
    if key is not None:
        t.delete("api_keys", key.id.encode())
    return key


def of_account(t: Txn, account: str) -> list[ApiKey]:
    return [k for k in (ApiKey.unpack(v) for _, v in t.scan("api_keys", b"")) if k.account == account]


def remove(t: Txn, account: str, key_id: str) -> ApiKey | None:
    raw = t.get("api_keys", key_id.encode())
    if raw is None:
        return None
    key = ApiKey.unpack(raw)
    if key.account != account:
        return None
    t.delete("api_keys", key_id.encode())
    return key


def forget_account(t: Txn, account: str) -> None:
    for key in of_account(t, account):
        t.delete("api_keys", key.id.encode())


def check(t: Txn, token: str) -> ApiKey | None:
    """The key a token is, if it is one and has not expired (its account is checked by the caller)."""
    if not token.startswith(PREFIX):
        return None
    key_id, _, secret = token[len(PREFIX) :].partition("_")
    raw = t.get("api_keys", key_id.encode()) if key_id and secret else None
    if raw is None:
        return None
    return _valid(ApiKey.unpack(raw), "token", hashlib.sha256(secret.encode()).hexdigest())


def check_cert(t: Txn, key_id: str, cert_sha256: str) -> ApiKey | None:
    """The key a verified client certificate is, if it is still one and has not expired."""
    raw = t.get("api_keys", key_id.encode())
    return _valid(ApiKey.unpack(raw), "cert", cert_sha256) if raw is not None else None


def _valid(key: ApiKey, kind: str, digest: str) -> ApiKey | None:
    if key.kind != kind or not hmac.compare_digest(key.digest, digest):
        return None
    if key.expires and key.expires < time.time():
        return None
    return key
