"""Object keys: the only place where the names of objects on a pool are made.

    superblock                  the filesystem's superblock (one on every pool)
    blocks/<hh>/<hex>           a block object; <hex> is the block id in lower-case hex,
                                <hh> its first two digits (256 fan-out directories)
    journal/<first>-<last>      a metadata journal segment: change sets first..last
                                (16 hex digits each)
    snapshots/<seq>             a snapshot of all metadata as of change set <seq>
    lease                       who has the filesystem mounted, until when

Keys are relative, '/'-separated paths. `check_key` states what a pool accepts.
"""

from __future__ import annotations

SUPERBLOCK_KEY = "superblock"
BLOCK_PREFIX = "blocks/"
JOURNAL_PREFIX = "journal/"
SNAPSHOT_PREFIX = "snapshots/"
LEASE_KEY = "lease"

# Pools that stage writes in temporary files name them with this prefix; no key may use it.
TEMP_PREFIX = ".repfs-tmp-"


def block_key(block_id: bytes) -> str:
    return f"{BLOCK_PREFIX}{block_id.hex()[:2]}/{block_id.hex()}"


def block_id_from_key(key: str) -> bytes:
    """The block id named by a key made by `block_key`; ValueError for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or f"{parts[0]}/" != BLOCK_PREFIX or not parts[2].startswith(parts[1]):
        raise ValueError(f"not a block key: {key!r}")
    try:
        block_id = bytes.fromhex(parts[2])
    except ValueError:
        raise ValueError(f"not a block key: {key!r}") from None
    if not block_id or block_key(block_id) != key:
        raise ValueError(f"not a block key: {key!r}")
    return block_id


def journal_key(first: int, last: int) -> str:
    return f"{JOURNAL_PREFIX}{first:016x}-{last:016x}"


def parse_journal_key(key: str) -> tuple[int, int]:
    """(first, last) of a key made by `journal_key`; ValueError for any other key."""
    name = key.removeprefix(JOURNAL_PREFIX)
    parts = name.split("-")
    if name == key or len(parts) != 2 or any(len(p) != 16 for p in parts):
        raise ValueError(f"not a journal key: {key!r}")
    first, last = (int(p, 16) for p in parts)
    if journal_key(first, last) != key or last < first:
        raise ValueError(f"not a journal key: {key!r}")
    return first, last


def snapshot_key(seq: int) -> str:
    return f"{SNAPSHOT_PREFIX}{seq:016x}"


def parse_snapshot_key(key: str) -> int:
    name = key.removeprefix(SNAPSHOT_PREFIX)
    if name == key or len(name) != 16:
        raise ValueError(f"not a snapshot key: {key!r}")
    seq = int(name, 16)
    if snapshot_key(seq) != key:
        raise ValueError(f"not a snapshot key: {key!r}")
    return seq


def check_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise ValueError.

    A key is a non-empty relative path of non-empty components: no leading '/', no '.',
    '..' or empty components, no NUL, and no component that looks like a temporary file.
    So a key can never name anything outside a pool's root.
    """
    if not key or "\0" in key or key.startswith("/"):
        raise ValueError(f"invalid object key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith(TEMP_PREFIX):
            raise ValueError(f"invalid object key {key!r}")
    return key
