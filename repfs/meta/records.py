"""Packed records stored as LMDB values (see schema.py for where each lives)."""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from repfs.errors import CorruptObject

_INODE_V1 = struct.Struct("<BIIIIQQqqq")
_BLOCK_HEAD = struct.Struct("<BIIQB")
_U64 = struct.Struct("<Q")


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
    digest of its object (`state.object_digest`), which challenges and scrub check copies by.

    A block carried by a pack (`journal.pack`) names it in `in_pack` and lies at `offset`
    in it, `stored_size` bytes long; its pools are the pack's. Version 2 records (no pack)
    are written as before; version 3 adds the pack's name and the offset."""

    size: int
    stored_size: int
    refcount: int
    pools: tuple[str, ...]
    digest: bytes = b""
    in_pack: str = ""  # the pack's object key; "" for a block that is its own object
    offset: int = 0

    @property
    def place(self) -> tuple[str, int, int] | None:
        """(pack key, offset, length) of a packed block's frame; None for a standalone one."""
        return (self.in_pack, self.offset, self.stored_size) if self.in_pack else None

    def pack(self) -> bytes:
        names = [p.encode() for p in self.pools]
        if len(self.digest) > 255:
            raise ValueError("digest too long")
        version = 3 if self.in_pack else 2
        out = [
            _BLOCK_HEAD.pack(version, self.size, self.stored_size, self.refcount, len(names)),
            bytes([len(self.digest)]) + self.digest,
        ]
        for n in names:
            out.append(bytes([len(n)]) + n)
        if self.in_pack:
            name = self.in_pack.encode()
            out.append(bytes([len(name)]) + name + _U64.pack(self.offset))
        return b"".join(out)

    @classmethod
    def unpack(cls, data: bytes) -> BlockRecord:
        try:
            version, size, stored, refcount, count = _BLOCK_HEAD.unpack_from(data)
            if version not in (1, 2, 3):
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
            in_pack, offset = "", 0
            if version >= 3:
                n = data[pos]
                in_pack = data[pos + 1 : pos + 1 + n].decode()
                (offset,) = _U64.unpack_from(data, pos + 1 + n)
                if not in_pack:
                    raise ValueError("a version 3 record names its pack")
        except (struct.error, ValueError, IndexError, UnicodeDecodeError):
            raise CorruptObject("unreadable block record") from None
        return cls(size, stored, refcount, tuple(pools), digest, in_pack, offset)
