"""Files by their content (seed 003): the files with a given SHA-256 that an account may
reach, and how many files wait for their hash (the answer may miss those)."""

from __future__ import annotations

from dataclasses import dataclass

from repfs.errors import InvalidRequest, NotADirectory, NotFound
from repfs.fs import contenthash
from repfs.fs.contenthash import ContentHashes
from repfs.fs.paths import child_path
from repfs.fs.sharemanager import resolve_as
from repfs.meta.store import MetaStore

MAX_MATCHES = 1000


@dataclass(frozen=True)
class Match:
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ContentMatches:
    sha256: str
    files: list[Match]  # every name of every file with that content the account may reach
    pending: int  # files whose hash is not known yet (none of them is in `files`)


def parse_sha256(text: str) -> bytes:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise InvalidRequest("sha256 must be 64 hexadecimal digits")
    return bytes.fromhex(text)


def files_with_content(meta: MetaStore, hashes: ContentHashes, sha256: str, *, uid: int = 0) -> ContentMatches:
    digest = parse_sha256(sha256)
    with meta.read() as t:
        inos = hashes.files_with(t, digest)[:MAX_MATCHES]
        named = [(ino, child_path(t, parent, name)) for ino in inos for parent, name in t.links_of(ino)]
        inodes = {ino: t.inode(ino) for ino in inos}
        waiting = contenthash.pending_count(t)
    found = []
    for ino, path in sorted(named, key=lambda x: x[1]):
        try:
            if uid != 0 and resolve_as(meta, path, uid) != ino:
                continue
        except (NotFound, NotADirectory):
            continue
        inode = inodes[ino]
        found.append(Match(path, inode.size, inode.mtime_ns / 1e9))
    return ContentMatches(digest.hex(), found, waiting)
