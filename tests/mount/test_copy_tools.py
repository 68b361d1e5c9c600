"""cp -a, cp -p, tar and rsync into the mount keep everything: ACLs, xattrs, hard and
symbolic links, FIFOs, sparse files, owners, modes and times; they exit 0 and print nothing."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Repfs, sha256

pytestmark = pytest.mark.timeout(180)

D, H = 2004, 3002
MiB = 1 << 20


def setfacl(path: Path, spec: str, *flags: str) -> None:
    subprocess.run(["setfacl", *flags, "-m", spec, str(path)], check=True, capture_output=True)


def build_source(src: Path) -> None:
    src.mkdir()
    (src / "plain").write_bytes(b"plain file\n")
    (src / "secret").write_bytes(b"only the owner")
    (src / "secret").chmod(0o600)
    (src / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "tool").chmod(0o755)
    (src / "setuid").write_bytes(b"s")
    (src / "setuid").chmod(0o4755)
    (src / "owned").write_bytes(b"theirs")
    os.chown(src / "owned", 2001, 3001)
    (src / "with acl").write_bytes(b"shared")
    setfacl(src / "with acl", f"u:{D}:rw,g:{H}:r")
    (src / "tagged").write_bytes(b"xattrs")
    os.setxattr(src / "tagged", "user.colour", b"blue")
    os.setxattr(src / "tagged", "user.binary", bytes(range(256)))
    (src / "empty").write_bytes(b"")
    sub = src / "sub dir ü"
    sub.mkdir()
    os.setxattr(sub, "user.dir", b"d")
    os.link(src / "plain", sub / "hard link")
    os.symlink("../plain", sub / "relative link")
    os.symlink("/nowhere/at/all", sub / "dangling")
    os.symlink("sub dir ü", src / "dir link")
    os.mkfifo(sub / "fifo", 0o640)
    with open(sub / "sparse", "wb") as f:  # 20 MiB, 1 KiB of data at 5 MiB
        f.truncate(20 * MiB)
        f.seek(5 * MiB)
        f.write(os.urandom(1024))
    inherit = src / "inherits"
    inherit.mkdir()
    setfacl(inherit, f"u:{D}:rx,g:{H}:rwx", "-d")
    (inherit / "made after").write_bytes(b"inherited an ACL")
    (inherit / "deeper").mkdir()
    private = src / "private"
    private.mkdir(mode=0o700)
    (private / "f").write_bytes(b"p")
    (src / "empty dir").mkdir()
    for i, path in enumerate(sorted(src.rglob("*"), reverse=True)):  # children before their parents
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_500_000_000_123_456_789 + 1000 * i), follow_symlinks=False)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_500_000_000_000_000_001))


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


# What snapshot() keeps of a path: mode, uid, gid, size, mtime, content, user xattrs, the
# access and default ACLs, and the first name of its hard link group.
Record = tuple[
    int, int, int, int | None, int | None, object, dict[str, bytes | None], tuple[bytes | None, ...], str | None
]


def snapshot(root: Path, *, links: bool = True, xattrs: bool = True) -> dict[str, Record]:
    """What a copy must keep, per relative path (not st_ino, st_dev, st_ctime, st_blocks)."""
    out: dict[str, Record] = {}
    first_name: dict[int, str] = {}
    for path in sorted([root, *root.rglob("*")]):
        rel = str(path.relative_to(root))
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISREG(kind):
            content: object = sha256(path)
        elif stat.S_ISLNK(kind):
            content = os.readlink(path)
        else:
            content = None
        user_xattrs: dict[str, bytes | None] = {}
        if xattrs and not stat.S_ISLNK(kind):
            user_xattrs = {n: _xattr(path, n) for n in sorted(os.listxattr(path)) if n.startswith("user.")}
        acls = tuple(_xattr(path, n) for n in ("system.posix_acl_access", "system.posix_acl_default"))
        link_group: str | None = None
        if links and stat.S_ISREG(kind) and st.st_nlink > 1:
            link_group = first_name.setdefault(st.st_ino, rel)
        mtime = st.st_mtime_ns if rel != "." else None  # the top directory is made by the copy
        size = None if stat.S_ISDIR(kind) else st.st_size  # a directory's size is the filesystem's own
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, size, mtime, content, user_xattrs, acls, link_group)
    return out


def acl_listing(root: Path) -> str:
    """`getfacl -R`, one block per file, in name order (readdir order is the filesystem's own)."""
    res = subprocess.run(["getfacl", "-R", "-p", "."], cwd=root, capture_output=True, text=True, check=True)
    return "\n\n".join(sorted(block.strip() for block in res.stdout.split("\n\n") if block.strip()))


def run(cmd: list[str] | str, **kw: object) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, shell=isinstance(cmd, str), **kw)  # type: ignore[call-overload]
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), f"{cmd}: exit {res.returncode}\n{res.stderr[:3000]}"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    build_source(src)
    return src


def test_cp_a_tar_and_rsync_keep_everything(repfs: Repfs, source: Path) -> None:
    want = snapshot(source)
    assert want["with acl"][7][0] is not None and want["inherits/made after"][7][0] is not None
    copies: dict[str, Callable[[Path], None]] = {
        "cp -a": lambda dst: run(["cp", "-a", f"{source}/.", str(dst)]),
        "tar --acls --xattrs": lambda dst: run(
            f"tar --format=posix --acls --xattrs --xattrs-include='user.*' -cpf - -C '{source}' . "
            f"| tar --acls --xattrs --xattrs-include='user.*' -xpf - -C '{dst}'"
        ),
        "rsync -aAXH": lambda dst: run(["rsync", "-aAXH", f"{source}/", f"{dst}/"]),
    }
    for name, copy in copies.items():
        dst = repfs.mnt / name.split()[0]
        dst.mkdir()
        copy(dst)
        got = snapshot(dst)
        differ = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not differ and got.keys() == want.keys(), f"{name}: copy vs source: {differ}"
        assert acl_listing(dst) == acl_listing(source), name
    sparse = os.stat(repfs.mnt / "cp" / "sub dir ü" / "sparse")
    assert sparse.st_blocks * 512 <= 2 * repfs.block_bytes  # cp -a kept the hole: one block of data
    repfs.remount()
    assert snapshot(repfs.mnt / "cp") == want  # and all of it is in the metadata, not in kernel caches


def test_cp_p_keeps_modes_owners_times_and_acls(repfs: Repfs, source: Path) -> None:
    dst = repfs.mnt / "cpp"
    run(["cp", "-rp", str(source), str(dst)])
    assert snapshot(dst, links=False, xattrs=False) == snapshot(source, links=False, xattrs=False)
    assert acl_listing(dst) == acl_listing(source)
