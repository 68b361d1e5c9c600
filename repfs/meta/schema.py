"""The LMDB schema: every named database, its key layout and its value. This is the spec.

All integers in keys are big-endian so that LMDB's byte order is numeric order.

| database  | key                                 | value                                   |
|-----------|-------------------------------------|-----------------------------------------|
| inodes    | ino (u64)                           | `records.Inode` (packed struct)         |
| dirents   | parent ino (u64) ‖ name             | child ino (u64) ‖ cookie (u64)          |
| dircookie | parent ino (u64) ‖ cookie (u64)     | name   (readdir order, stable positions)|
| parents   | directory ino (u64)                 | parent directory ino (u64)              |
| symlinks  | ino (u64)                           | target bytes                            |
| blockmap  | ino (u64) ‖ block index (u64)       | block id (32 bytes)                     |
| blocks    | block id (32 bytes)                 | `records.BlockRecord` (packed)          |
| xattrs    | ino (u64) ‖ name                    | value bytes                             |
| orphans   | ino (u64)                           | its namespace ino (u64; empty: none): nlink 0, still open |
| gc        | block id (32 bytes)                 | empty: refcount reached 0, to delete    |
| deficit   | block id (32 bytes)                 | empty: fewer copies than `replicas`     |
| meta      | ascii name                          | value (superblock copy, counters, ...)  |
| accounts  | account name (UTF-8)                | `fs.accounts.Account` (versioned JSON)  |
| account_uids | uid (u64)                        | account name                            |
| namespaces | directory ino (u64)                | account name: the account's `/<name>/`  |
| links     | ino (u64) ‖ parent ino (u64) ‖ name | empty: one per name of the inode (paths)|
| shares    | item ino (u64) ‖ grantee uid (u64)  | `fs.shares.Share` (versioned JSON)      |
| shares_by_grantee | grantee uid (u64) ‖ item ino (u64) | empty                            |
| shares_in | namespace ino ‖ item ino ‖ grantee uid (u64 each) | empty                     |
| usage     | namespace ino (u64)                 | bytes (u64) ‖ files (u64): `fs.quota`   |
| quotas    | account name                        | `fs.quota.Limits` (versioned JSON)      |
| holds     | item ino (u64)                      | `fs.holds.Hold` (versioned JSON)        |
| ingest    | ino (u64)                           | ingest time (u64 ns) ‖ namespace (u64): `fs.ingest` |
| ingest_order | namespace ‖ ingest time ‖ ino (u64 each) | empty: files by ingest time       |
| retention | folder ino (u64; 1: the whole filesystem) | `fs.retention.Rule` (versioned JSON) |
| api_keys  | key id (ASCII)                      | `fs.apikeys.ApiKey` (versioned JSON; the secret's SHA-256) |

Absent blockmap entries inside a file's size are holes and read as zeros.
"""

from __future__ import annotations

import struct

# Every database with its id: the journal names a database by this number (segment.py),
# so an id is never changed or reused; a new database takes the next free number. The
# first twelve are the positions the journal used before ids were pinned, so segments
# written then read the same (tests/unit/test_journal_format.py holds golden vectors).
DATABASE_IDS: dict[str, int] = {
    "inodes": 0,
    "dirents": 1,
    "dircookie": 2,
    "parents": 3,
    "symlinks": 4,
    "blockmap": 5,
    "blocks": 6,
    "xattrs": 7,
    "orphans": 8,
    "gc": 9,
    "deficit": 10,
    "meta": 11,
    "accounts": 12,
    "account_uids": 13,
    "namespaces": 14,
    "links": 15,
    "shares": 16,
    "shares_by_grantee": 17,
    "shares_in": 18,
    "usage": 19,
    "quotas": 20,
    "holds": 21,
    "ingest": 22,
    "ingest_order": 23,
    "retention": 24,
    "api_keys": 25,
    "content_hash": 26,
    "file_hash": 27,
    "hash_pending": 28,
    "packs": 29,
}
DATABASES = tuple(DATABASE_IDS)
DATABASE_BY_ID = {i: name for name, i in DATABASE_IDS.items()}

# 2: the `links` table (built from `dirents` at the first mount of an older filesystem)
# 3: the `usage` counters (counted from each namespace's tree at the first mount)
# 4: ingest times (each existing inode's ctime) and their order
# 5: content hashes (every existing file pending: the hasher reads it)
# 6: packs (`blocks.packs`; block records of version 3): nothing to migrate, an older filesystem has none
SCHEMA_VERSION = 6
ROOT_INO = 1

_U64 = struct.Struct(">Q")
_U64x2 = struct.Struct(">QQ")

# names in the `meta` database
META_SCHEMA = b"schema_version"
META_NEXT_INO = b"next_ino"
META_NEXT_COOKIE = b"next_cookie"
META_SUPERBLOCK = b"superblock"
META_FS_UUID = b"fs_uuid"
META_CLEAN = b"clean_unmount"
META_CACHE_DIR = b"cache_dir"
META_SCRUB_CURSOR = b"scrub_cursor"
META_SCRUB_FINISHED = b"scrub_finished"  # u64 unix ns: when a scrub last went through every block
META_SHARING = b"sharing"  # present once a share was ever made: ACLs are computed from then on
META_JOURNAL_SEQ = b"journal_seq"  # the sequence number of the last committed change set
META_JOURNAL_STORED = b"journal_stored"  # the last sequence number known to be on the pools
META_RETENTION_DEFAULT = b"retention_default"  # `fs.retention.Rule` given to each new namespace
META_CLIENT_CA = b"client_ca"  # `fs.clientca.ClientCa`: the CA of client certificates
META_MAIL = b"mail"  # `repfs.fs.mail.MailSettings`: how mail to account holders is sent
META_SWEEP = b"retention_sweep"  # the sweeper's progress (`fs.expiry`): resumed after a restart
META_PACK_CARRIER = b"pack_carrier"  # a change set made only for blocks waiting to be carried (`journal.pack`)

# `meta` entries that describe this host's copy, not the filesystem: never journaled
LOCAL_META = frozenset(
    {META_SWEEP, META_CACHE_DIR, META_SCRUB_CURSOR, META_CLEAN, META_JOURNAL_SEQ, META_JOURNAL_STORED}
)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def from_u64(b: bytes) -> int:
    return int(_U64.unpack(b)[0])


def inode_key(ino: int) -> bytes:
    return _U64.pack(ino)


def dirent_key(parent: int, name: bytes) -> bytes:
    return _U64.pack(parent) + name


def dirent_prefix(parent: int) -> bytes:
    return _U64.pack(parent)


def dirent_value(child: int, cookie: int) -> bytes:
    return _U64x2.pack(child, cookie)


def parse_dirent_value(v: bytes) -> tuple[int, int]:
    child, cookie = _U64x2.unpack(v)
    return int(child), int(cookie)


def cookie_key(parent: int, cookie: int) -> bytes:
    return _U64x2.pack(parent, cookie)


def blockmap_key(ino: int, index: int) -> bytes:
    return _U64x2.pack(ino, index)


def parse_blockmap_key(k: bytes) -> tuple[int, int]:
    ino, index = _U64x2.unpack(k)
    return int(ino), int(index)


def link_key(ino: int, parent: int, name: bytes) -> bytes:
    return _U64x2.pack(ino, parent) + name


def parse_link_key(k: bytes) -> tuple[int, int, bytes]:
    ino, parent = _U64x2.unpack_from(k)
    return int(ino), int(parent), k[_U64x2.size :]


def xattr_key(ino: int, name: bytes) -> bytes:
    return _U64.pack(ino) + name
