"""`repfs recover`: rebuild a filesystem's metadata on a new host from its pools alone.

All it needs is the pool configuration (`FS_DIR/repfs.toml`, copied from the old host
or written by hand) and the secret: the data key comes from any pool's superblock, the
metadata from the newest snapshot that reads plus the journal after it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import trio

from repfs.backend.base import Pool
from repfs.backend.metaobjects import MetaObjects
from repfs.codec.codec import BlockCodec
from repfs.codec.keys import derive_keys
from repfs.codec.superblock import Superblock
from repfs.config import FsConfig, load_config
from repfs.errors import CorruptObject, FilesystemExists, ForeignPool, SetupError, StorageError
from repfs.fs import accounts
from repfs.fs.accountmanager import make_host_user
from repfs.fslock import lock_fs_dir
from repfs.journal.replay import Replayed, rebuild
from repfs.meta import schema as s
from repfs.meta.store import MetaStore
from repfs.stack import build_poolset
from repfs.volume import FsPaths, _each, _read_superblock, _unlock_any, open_pool

log = logging.getLogger(__name__)


async def _superblocks(pools: dict[str, Pool]) -> dict[str, Superblock]:
    """The superblock of every pool that answers with one within `OPEN_TIMEOUT` (a pool
    that hangs holds recovery up no longer than it would hold up a mount)."""
    read, errors = await _each(list(pools.values()), _read_superblock)
    for name, exc in errors.items():
        if isinstance(exc, StorageError | CorruptObject):
            log.warning("pool %s: no superblock read: %s", name, exc)
        else:
            raise exc
    return {name: sb for name, sb in read.items() if sb is not None}


async def recover(
    fs_dir: Path,
    secret: bytes,
    *,
    force: bool = False,
    create_system_users: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Replayed:
    """Rebuild `FS_DIR/meta` from the pools named in `FS_DIR/repfs.toml`, then check its
    accounts against this host's users (making the missing ones with
    `create_system_users`, with their old uids)."""
    paths = FsPaths(fs_dir)
    config = load_config(paths.config)
    lock_fd = lock_fs_dir(paths)  # not while it is mounted here
    try:
        return await _recover(
            paths, config, secret, force=force, create_system_users=create_system_users, progress=progress
        )
    finally:
        os.close(lock_fd)


async def _recover(
    paths: FsPaths,
    config: FsConfig,
    secret: bytes,
    *,
    force: bool,
    create_system_users: bool,
    progress: Callable[[int, int], None] | None,
) -> Replayed:
    if paths.meta.exists() and any(paths.meta.iterdir()) and not force:
        raise FilesystemExists(
            f"{paths.meta} already holds metadata; recover replaces it only with --force "
            "(changes made there and not on the pools are lost)"
        )
    pools = {spec.name: open_pool(spec) for spec in config.pools}
    try:
        found = await _superblocks(pools)
        if not found:
            raise SetupError("no pool answers with a repfs superblock; check the pools in " + str(paths.config))
        uuids = {sb.fs_uuid for sb in found.values()}
        if len(uuids) > 1:
            detail = ", ".join(f"{n}: {sb.fs_uuid}" for n, sb in sorted(found.items()))
            raise ForeignPool(f"the pools belong to different filesystems ({detail}); fix {paths.config}")
        superblock, data_key = await trio.to_thread.run_sync(_unlock_any, list(found.values()), secret)
        codec = BlockCodec(derive_keys(data_key))
        # only the pools that answered: one that hangs would cost every listing its deadline
        answering = [p for p in config.pools if p.name in found]
        replicas = min(config.replicas, len(answering))
        config = dataclasses.replace(
            config, pools=tuple(answering), replicas=replicas, write_quorum=min(config.write_quorum, replicas)
        )
        objects = MetaObjects(build_poolset(config, {name: pool for name, pool in pools.items() if name in found}))
        missing = sorted(set(pools) - set(found))
        if missing:
            log.warning("recovering without pool(s) %s: they do not answer", ", ".join(missing))
        out = await rebuild(paths.meta, objects, objects, codec, progress=progress)
    finally:
        for pool in pools.values():
            await pool.close()
    meta = MetaStore(paths.meta)
    try:
        with meta.read() as t:
            raw = t.get("meta", s.META_FS_UUID)
        if raw is None or raw.decode() != superblock.fs_uuid:
            raise SetupError("the recovered metadata belongs to another filesystem than the pools' superblock")
        with meta.read() as t:
            people = accounts.listed(t)
    finally:
        meta.close()
    shutil.rmtree(paths.cache, ignore_errors=True)  # blocks a dead host staged are not ours to upload
    if create_system_users:
        for account in people:
            if accounts.host_uid(account.name) is None:
                await trio.to_thread.run_sync(make_host_user, account.name, account.uid)
    try:
        accounts.check_host(people)
    except SetupError as exc:
        raise SetupError(f"the metadata is recovered, but {exc}") from None
    return out
