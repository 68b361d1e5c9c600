"""Packed records stored as LMDB values (see schema.py for where each lives)."""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from repfs.errors import CorruptObject

_INODE_V1 = struct.Struct("<BIIIIQQqqq")
_BLOCK_HEAD = struct.Struct("<BIIQB")


@dataclass(slots=True)
class Inode:
    """The attributes of one inode. Times are nanoseconds since the epoch."""

    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    size: int = 0
    rdev: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0

    def pack(self) -> bytes:
        return _INODE_V1.pack(
            1,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.size,
            self.rdev,
            self.atime_ns,
            self.mtime_ns,
            self.ctime_ns,
        )

    @classmethod
    def unpack(cls, ino: int, data: bytes) -> Inode:
        if len(data) != _INODE_V1.size or data[0] != 1:
            raise CorruptObject(f"inode {ino}: unreadable record")
        _, mode, uid, gid, nlink, size, rdev, at, mt, ct = _INODE_V1.unpack(data)
        return cls(ino, mode, uid, gid, nlink, size, rdev, at, mt, ct)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


@dataclass(slots=True)
class BlockRecord:
    """A stored block: plaintext size, object size, refcount, the pools holding it, and the
    digest of its object (`state.object_digest`), which challenges and scrub check copies by."""

    size: int
    stored_size: int
    refcount: int
    pools: tuple[str, ...]
    digest: bytes = b""

    def pack(self) -> bytes:
        names = [p.encode() for p in self.pools]
        if len(self.digest) > 255:
            raise ValueError("digest too long")
        out = [
            _BLOCK_HEAD.pack(2, self.size, self.stored_size, self.refcount, len(names)),
            bytes([len(self.digest)]) + self.digest,
        ]
        for n in names:
            out.append(bytes([len(n)]) + n)
        return b"".join(out)

    @classmethod
    def unpack(cls, data: bytes) -> BlockRecord:
        try:
            version, size, stored, refcount, count = _BLOCK_HEAD.unpack_from(data)
            if version not in (1, 2):
                raise ValueError(version)
            pos = _BLOCK_HEAD.size
            digest = b""
            if version >= 2:
                n = data[pos]
                digest = bytes(data[pos + 1 : pos + 1 + n])
                pos += 1 + n
            pools = []
            for _ in range(count):
                n = data[pos]
                pools.append(data[pos + 1 : pos + 1 + n].decode())
                pos += 1 + n
        except (struct.error, ValueError, IndexError, UnicodeDecodeError):
            raise CorruptObject("unreadable block record") from None
        return cls(size, stored, refcount, tuple(pools), digest)
