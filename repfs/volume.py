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

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio

from repfs.backend.base import Pool
from repfs.backend.keys import LEASE_KEY, SUPERBLOCK_KEY
from repfs.backend.local import LocalPool
from repfs.backend.s3 import S3Pool
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.codec.superblock import Superblock
from repfs.config import CONFIG_NAME, FILE_SCHEME, FsConfig, PoolSpec, load_config
from repfs.errors import (
    CorruptObject,
    FilesystemExists,
    ForeignPool,
    ObjectNotFound,
    PoolUnavailable,
    RepfsError,
    SetupError,
    StorageError,
    WrongPassphrase,
)
from repfs.fs import namespace as ns
from repfs.lease import DEFAULT_TTL as LEASE_TTL
from repfs.meta import schema as s
from repfs.meta.store import MetaStore

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    def history(self) -> Path:
        return self.root / "history.sqlite"

    @property
    def lock(self) -> Path:
        return self.root / "mount.lock"

    @property
    def log(self) -> Path:
        return self.root / "repfs.log"


def open_pool(spec: PoolSpec, *, create: bool = False) -> Pool:
    """The pool of a spec: a local directory (made when `create`) or an S3 bucket.

    S3 credentials are resolved here (ConfigError naming the pool if there are none);
    a bucket is never made here: see `mkfs`."""
    if spec.kind != FILE_SCHEME:
        return S3Pool.from_spec(spec)
    if create:
        try:
            spec.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SetupError(f"cannot create pool {spec.name} at {spec.path}: {exc.strerror}") from None
    return LocalPool.from_spec(spec, create_root=create)


def open_pools(specs: Sequence[PoolSpec], *, create: bool = False) -> list[Pool]:
    """`open_pool` for each spec (making a pool object opens no connection yet)."""
    return [open_pool(spec, create=create) for spec in specs]


async def _read_superblock(pool: Pool) -> Superblock | None:
    try:
        return Superblock.from_bytes(await pool.get(SUPERBLOCK_KEY))
    except ObjectNotFound:
        return None


# How long a pool may take to answer when a filesystem is opened: a pool that hangs (a
# frozen server, a hung disk) is then unreachable and starts out down; it never holds up
# a mount, recover or fsck for longer.
OPEN_TIMEOUT = 10.0
# mkfs runs once, for an operator at a terminal, and its writes are often a bucket's first:
# some servers allocate storage for a new bucket then (SeaweedFS grows a volume). It waits
# longer than a mount before it calls a pool unreachable.
MKFS_TIMEOUT = 30.0


# `timeout` bounds each pool's answer, not the call: a late pool gets PoolUnavailable while
# the others' results still count, which a cancel scope around the call cannot do.
async def _each(
    pools: Sequence[Pool],
    fn: Callable[[Pool], Awaitable[T]],
    *,
    timeout: float = OPEN_TIMEOUT,  # noqa: ASYNC109
    doing: str = "",
) -> tuple[dict[str, T], dict[str, RepfsError]]:
    """Run `fn` on every pool at once: (results, repfs errors), each by pool name. A pool
    that has not answered within `timeout` seconds gets PoolUnavailable; `doing` names the
    step in its message."""
    step = f" ({doing})" if doing else ""
    results: dict[str, T] = {}
    errors: dict[str, RepfsError] = {}

    async def one(pool: Pool) -> None:
        try:
            with trio.move_on_after(timeout):
                results[pool.name] = await fn(pool)
                return
            errors[pool.name] = PoolUnavailable(
                f"pool {pool.name} ({pool.url}) did not answer within {timeout:g} s{step}"
            )
        except RepfsError as exc:
            errors[pool.name] = exc

    async with trio.open_nursery() as nursery:
        for pool in pools:
            nursery.start_soon(one, pool)
    return results, errors


def _raise_any(pools: Sequence[Pool], errors: dict[str, RepfsError]) -> None:
    """Raise one error that tells every failed pool's story (in configuration order)."""
    found = [errors[p.name] for p in pools if p.name in errors]
    if len(found) == 1:
        raise found[0]
    if found:
        raise type(found[0])("; ".join(str(e) for e in found))


async def _bucket_ready(pool: Pool) -> bool:
    """Whether the pool can take objects now; False only for an S3 pool whose bucket is missing."""
    if isinstance(pool, S3Pool):
        return await pool.bucket_exists()
    await pool.ping()
    return True


async def _existing_superblock(pool: Pool) -> Superblock | None:
    try:
        return await _read_superblock(pool)
    except CorruptObject:
        return None


async def _wipe(pool: Pool) -> None:
    async for key in pool.list(""):
        await pool.delete(key)


async def _refuse_live_lease(pool: Pool, renewed: float | None, sb: Superblock | None, secret: bytes) -> None:
    """A mounted filesystem renews its lease every ttl/3 seconds: a lease written less
    than a ttl ago means the pool is in use, whoever's key wrote it. Never wipe it."""
    if renewed is None or time.time() - renewed > LEASE_TTL:
        return
    holder = ""
    if sb is not None:
        try:  # the same key: the lease says who holds it
            data_key = await trio.to_thread.run_sync(sb.unlock, secret)
            obj = await pool.get(LEASE_KEY)
            lease = json.loads(BlockCodec(derive_keys(data_key)).decode_meta(LEASE_KEY, obj))
            holder = f" by host {lease['host']} (pid {lease['pid']}, {lease['fs_dir']})"
        except (RepfsError, ValueError, KeyError, TypeError):
            holder = f" by filesystem {sb.fs_uuid}"
    raise FilesystemExists(
        f"pool {pool.name} ({pool.url}) is in use: a mounted filesystem renewed its lease there "
        f"{time.time() - renewed:.0f} s ago{holder}; unmount that filesystem before making a new one here"
    )


async def mkfs(
    fs_dir: Path,
    config: FsConfig,
    secret: bytes,
    *,
    uid: int,
    gid: int,
    force: bool = False,
    create_buckets: bool = False,
) -> Superblock:
    """Create a new filesystem: pools' superblocks, empty metadata, the config file.

    Every pool is checked (reachable, credentials accepted, bucket there, no other
    filesystem's superblock) before anything is written; a missing bucket is made only
    with `create_buckets`."""
    paths = FsPaths(fs_dir)
    if paths.config.exists() and not force:
        raise FilesystemExists(
            f"{fs_dir} already holds a repfs filesystem; use --force to replace it (its data is lost)"
        )
    pools = open_pools(config.pools, create=True)
    try:
        ready, errors = await _each(pools, _bucket_ready, timeout=MKFS_TIMEOUT, doing="checking its bucket")
        _raise_any(pools, errors)
        missing = [p for p in pools if not ready[p.name]]
        if missing and not create_buckets:
            raise SetupError(
                "; ".join(
                    f"bucket {p.bucket} does not exist on pool {p.name} ({p.server})"
                    for p in missing
                    if isinstance(p, S3Pool)
                )
                + "; create it or pass --create-buckets"
            )
        _, errors = await _each(
            missing,
            lambda p: p.create_bucket() if isinstance(p, S3Pool) else p.ping(),
            timeout=MKFS_TIMEOUT,
            doing="creating its bucket",
        )
        _raise_any(pools, errors)
        existing, errors = await _each(
            pools, _existing_superblock, timeout=MKFS_TIMEOUT, doing="looking for a superblock"
        )
        _raise_any(pools, errors)
        for pool in pools:
            sb_there = existing[pool.name]
            if sb_there is not None and not force:
                raise FilesystemExists(
                    f"pool {pool.name} ({pool.url}) already belongs to filesystem {sb_there.fs_uuid}; "
                    "use --force to wipe it"
                )
        if force:
            leases, errors = await _each(
                pools, lambda p: p.modified(LEASE_KEY), timeout=MKFS_TIMEOUT, doing="reading its mount lease"
            )
            _raise_any(pools, errors)
            for pool in pools:
                await _refuse_live_lease(pool, leases[pool.name], existing[pool.name], secret)
            _, errors = await _each(pools, _wipe, timeout=math.inf)  # as long as a big pool takes
            _raise_any(pools, errors)
        sb, _ = await trio.to_thread.run_sync(Superblock.create, secret, config.block_size)
        _, errors = await _each(
            pools,
            lambda p: p.put(SUPERBLOCK_KEY, sb.to_bytes()),
            timeout=MKFS_TIMEOUT,
            doing="writing the superblock",
        )
        _raise_any(pools, errors)
    finally:
        for pool in pools:
            await pool.close()

    def make_fs_dir() -> None:
        if force:
            shutil.rmtree(paths.meta, ignore_errors=True)
            shutil.rmtree(paths.cache, ignore_errors=True)
        fs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    await trio.to_thread.run_sync(make_fs_dir)  # disk work (a big old cache takes a while to remove)
    meta = MetaStore(paths.meta)
    try:
        with meta.write() as t:
            t.put("meta", s.META_SCHEMA, s.u64(s.SCHEMA_VERSION))
            t.put("meta", s.META_SUPERBLOCK, sb.to_bytes())
            t.put("meta", s.META_FS_UUID, sb.fs_uuid.encode())
            ns.make_root(t, uid, gid)
    finally:
        meta.close()
    write_config(paths.config, config)
    log.info("created filesystem %s on %d pools", sb.fs_uuid, len(pools))
    return sb


def write_config(path: Path, config: FsConfig) -> None:
    """Write repfs.toml atomically, mode 0600 (it may hold S3 secret keys)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, config.to_toml().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


@dataclass
class OpenedFs:
    paths: FsPaths
    config: FsConfig
    superblock: Superblock  # the copy the secret unlocked
    data_key: bytes
    pools: dict[str, Pool]
    # Pools that could not be reached at mount (name → why): they start out down.
    unreachable: dict[str, str] = field(default_factory=dict)

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
    """Check the pools belong to this filesystem and unlock the data key.

    Every pool's superblock is read at once. A reachable pool with no superblock, another
    filesystem's or an unreadable one is refused (ForeignPool). Pools that cannot be
    reached (server down, bucket or directory missing, credentials rejected) are listed in
    `OpenedFs.unreachable` and logged; with fewer than `write_quorum` pools left the mount
    is refused, since no write could succeed."""
    paths = FsPaths(fs_dir)
    config = load_config(paths.config)
    mine = local_superblock(paths)
    opened = open_pools(config.pools)
    pools = {pool.name: pool for pool in opened}
    offline = {spec.name for spec in config.pools if spec.offline}
    try:
        found, errors = await _each([p for p in opened if p.name not in offline], _read_superblock)
        candidates = [mine]
        unreachable: dict[str, str] = {}
        for spec in config.pools:
            if spec.offline:  # an administrator took it out: not even asked
                log.warning("pool %s is offline (an administrator took it out); it is not used", spec.name)
                continue
            exc = errors.get(spec.name)
            if isinstance(exc, CorruptObject):
                raise ForeignPool(f"pool {spec.name} ({spec.url}) holds an unreadable superblock; check the pool")
            if isinstance(exc, StorageError):
                unreachable[spec.name] = str(exc)
                continue
            if exc is not None:
                raise exc
            sb = found[spec.name]
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
        reachable = len(config.pools) - len(unreachable) - len(offline)
        if reachable < config.write_quorum:
            raise SetupError(
                f"only {reachable} of {len(config.pools)} pools can be reached"
                + (f" ({len(offline)} offline)" if offline else "")
                + f", fewer than the write quorum "
                f"({config.write_quorum}): not mounting. Unreachable: "
                + "; ".join(f"{name}: {why}" for name, why in unreachable.items())
            )
        for name, why in unreachable.items():
            log.warning("pool %s is unreachable at mount; it starts out down: %s", name, why)
        unlocked, data_key = await trio.to_thread.run_sync(_unlock_any, candidates, secret)
    except BaseException:
        for pool in pools.values():
            await pool.close()
        raise
    return OpenedFs(paths, config, unlocked, data_key, pools, unreachable)


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


async def rewrap(
    pools: Sequence[Pool], superblock: Superblock, meta: MetaStore, old_secret: bytes, new_secret: bytes
) -> tuple[Superblock, list[str]]:
    """Wrap the data key under a new secret: the superblock on every pool and in the
    metadata. No data is rewritten. Returns the new superblock and the pools (with why)
    that still hold the old one. WrongPassphrase when `old_secret` does not unlock it."""
    sb = await trio.to_thread.run_sync(superblock.rewrap, old_secret, new_secret)
    failed: list[str] = []

    async def put(pool: Pool) -> None:
        try:
            await pool.put(SUPERBLOCK_KEY, sb.to_bytes())
        except StorageError as exc:
            failed.append(f"{pool.name}: {exc}")

    async with trio.open_nursery() as n:
        for pool in pools:
            n.start_soon(put, pool)
    with meta.write() as t:
        t.put("meta", s.META_SUPERBLOCK, sb.to_bytes())
    return sb, failed


async def passwd(fs_dir: Path, old_secret: bytes, new_secret: bytes) -> Superblock:
    """Rewrap the data key under a new passphrase on every pool; no data is rewritten."""
    opened = await open_fs(fs_dir, old_secret)
    try:
        meta = MetaStore(opened.paths.meta)
        try:
            sb, failed = await rewrap(list(opened.pools.values()), opened.superblock, meta, old_secret, new_secret)
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
