"""A filesystem on disk: its directory, pools and superblock; mkfs, open and passwd.

The filesystem directory (`FS_DIR`) holds:

    repfs.toml   the configuration (pools, replicas, block size)
    meta/        the LMDB metadata
    cache/       the default block cache (dirty blocks survive a crash here)
    mount.lock   held (flock) by the daemon while mounted
    repfs.log    the daemon's log when it runs in the background

Every pool holds the superblock: filesystem uuid, format version, block size and the
data key wrapped by a key derived from the passphrase.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import trio

from repfs.backend.base import Pool
from repfs.backend.keys import SUPERBLOCK_KEY
from repfs.backend.local import LocalPool
from repfs.codec.superblock import Superblock
from repfs.config import CONFIG_NAME, FsConfig, PoolSpec, load_config
from repfs.errors import (
    CorruptObject,
    FilesystemExists,
    ForeignPool,
    ObjectNotFound,
    PoolUnavailable,
    SetupError,
    WrongPassphrase,
)
from repfs.fs import namespace as ns
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FsPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def lock(self) -> Path:
        return self.root / "mount.lock"

    @property
    def log(self) -> Path:
        return self.root / "repfs.log"


def open_pool(spec: PoolSpec, *, create: bool = False) -> Pool:
    if create:
        try:
            spec.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SetupError(f"cannot create pool {spec.name} at {spec.path}: {exc.strerror}") from None
    return LocalPool.from_spec(spec, create_root=create)


async def _read_superblock(pool: Pool) -> Superblock | None:
    try:
        return Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
    except ObjectNotFound:
        return None


async def mkfs(fs_dir: Path, config: FsConfig, secret: bytes, *, uid: int, gid: int, force: bool = False) -> Superblock:
    """Create a new filesystem: pools' superblocks, empty metadata, the config file."""
    paths = FsPaths(fs_dir)
    if paths.config.exists() and not force:
        raise FilesystemExists(
            f"{fs_dir} already holds a repfs filesystem; use --force to replace it (its data is lost)"
        )
    pools = [open_pool(spec, create=True) for spec in config.pools]
    try:
        for pool in pools:
            try:
                existing = await _read_superblock(pool)
            except CorruptObject:
                existing = None
            if existing is not None and not force:
                raise FilesystemExists(
                    f"pool {pool.name} ({pool.url}) already belongs to filesystem {existing.fs_uuid}; "
                    "use --force to wipe it"
                )
            if force:
                async for key in pool.list(""):
                    await pool.delete(key)
        sb, _ = await trio.to_thread.run_sync(Superblock.create, secret, config.block_size)
        async with trio.open_nursery() as n:
            for pool in pools:
                n.start_soon(pool.put, SUPERBLOCK_KEY, sb.to_bytes())
    finally:
        for pool in pools:
            await pool.close()
    if force:
        shutil.rmtree(paths.meta, ignore_errors=True)
        shutil.rmtree(paths.cache, ignore_errors=True)
    fs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    meta = MetaStore(paths.meta)
    try:
        with meta.write() as t:
            t.put("meta", s.META_SCHEMA, s.u64(s.SCHEMA_VERSION))
            t.put("meta", s.META_SUPERBLOCK, sb.to_bytes())
            t.put("meta", s.META_FS_UUID, sb.fs_uuid.encode())
            ns.make_root(t, uid, gid)
    finally:
        meta.close()
    tmp = paths.config.with_suffix(".tmp")
    tmp.write_text(config.to_toml())
    tmp.replace(paths.config)
    log.info("created filesystem %s on %d pools", sb.fs_uuid, len(pools))
    return sb


@dataclass
class OpenedFs:
    paths: FsPaths
    config: FsConfig
    superblock: Superblock  # the copy the secret unlocked
    data_key: bytes
    pools: dict[str, Pool]

    def __repr__(self) -> str:
        return f"OpenedFs({self.paths.root}, uuid={self.superblock.fs_uuid})"

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()


def local_superblock(paths: FsPaths) -> Superblock:
    if not paths.meta.exists():
        raise SetupError(f"{paths.root}: metadata is missing ({paths.meta}); nothing to mount")
    meta = MetaStore(paths.meta)
    try:
        with meta.read() as t:
            raw = t.get("meta", s.META_SUPERBLOCK)
    finally:
        meta.close()
    if raw is None:
        raise SetupError(f"{paths.root}: the metadata has no superblock; was mkfs interrupted? run mkfs again")
    return Superblock.from_bytes(raw)


async def open_fs(fs_dir: Path, secret: bytes) -> OpenedFs:
    """Check every pool belongs to this filesystem and unlock the data key."""
    paths = FsPaths(fs_dir)
    config = load_config(paths.config)
    mine = local_superblock(paths)
    pools: dict[str, Pool] = {}
    candidates = [mine]
    try:
        for spec in config.pools:
            pool = open_pool(spec)
            pools[spec.name] = pool
            try:
                sb = await _read_superblock(pool)
            except PoolUnavailable as exc:
                log.warning("pool %s is unavailable at mount: %s", spec.name, exc)
                continue
            except CorruptObject:
                raise ForeignPool(
                    f"pool {spec.name} ({spec.url}) holds an unreadable superblock; check the pool"
                ) from None
            if sb is None:
                raise ForeignPool(
                    f"pool {spec.name} ({spec.url}) holds no repfs superblock: it is empty or not part of "
                    "this filesystem; check the URL in repfs.toml"
                )
            if sb.fs_uuid != mine.fs_uuid:
                raise ForeignPool(
                    f"pool {spec.name} ({spec.url}) belongs to filesystem {sb.fs_uuid}, not {mine.fs_uuid}; "
                    "check the URL in repfs.toml"
                )
            candidates.append(sb)
        unlocked, data_key = await trio.to_thread.run_sync(_unlock_any, candidates, secret)
    except BaseException:
        for pool in pools.values():
            await pool.close()
        raise
    return OpenedFs(paths, config, unlocked, data_key, pools)


def _unlock_any(candidates: list[Superblock], secret: bytes) -> tuple[Superblock, bytes]:
    """Unlock with the first superblock copy the secret opens (a passwd may have been cut short)."""
    seen: set[bytes] = set()
    for sb in candidates:
        if sb.wrapped_key in seen:
            continue
        seen.add(sb.wrapped_key)
        try:
            return sb, sb.unlock(secret)
        except WrongPassphrase:
            continue
    raise WrongPassphrase("wrong passphrase or key file: it does not unlock this filesystem")


async def passwd(fs_dir: Path, old_secret: bytes, new_secret: bytes) -> Superblock:
    """Rewrap the data key under a new passphrase on every pool; no data is rewritten."""
    opened = await open_fs(fs_dir, old_secret)
    try:
        sb = await trio.to_thread.run_sync(opened.superblock.rewrap, old_secret, new_secret)
        failed: list[str] = []

        async def put(pool: Pool) -> None:
            try:
                await pool.put(SUPERBLOCK_KEY, sb.to_bytes())
            except PoolUnavailable as exc:
                failed.append(f"{pool.name}: {exc}")

        async with trio.open_nursery() as n:
            for pool in opened.pools.values():
                n.start_soon(put, pool)
        meta = MetaStore(opened.paths.meta)
        try:
            with meta.write() as t:
                t.put("meta", s.META_SUPERBLOCK, sb.to_bytes())
        finally:
            meta.close()
        if failed:
            raise PoolUnavailable(
                "the new passphrase is set, but these pools still hold the old superblock: "
                + "; ".join(failed)
                + ". Run 'repfs passwd' again when they are back."
            )
        return sb
    finally:
        await opened.close()
