"""The data key's secret, changed while mounted (`repfs-admin keys passwd`).

The data key is wrapped again under the new secret, on every pool and in the metadata; no
data is rewritten. The health monitor keeps the new superblock: it is what a pool that
was wiped gets back from now on. Secrets are never logged or answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from repfs.backend.health import HealthMonitor
from repfs.errors import InvalidRequest, SetupError, WrongPassphrase
from repfs.meta.store import MetaStore
from repfs.volume import OpenedFs, rewrap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecretChanged:
    fs_uuid: str
    stale_pools: list[str]  # pools (with why) that still hold the old wrapping


async def change_secret(
    opened: OpenedFs, health: HealthMonitor, meta: MetaStore, old: bytes, new: bytes
) -> SecretChanged:
    """WrongPassphrase when `old` does not unlock the key; InvalidRequest for a new secret
    that is not acceptable (empty, too short)."""
    try:
        sb, stale = await rewrap(list(opened.pools.values()), health.superblock, meta, old, new)
    except WrongPassphrase:
        raise
    except SetupError as exc:
        raise InvalidRequest(str(exc)) from None
    health.superblock = sb
    opened.superblock = sb
    log.info("the data key is wrapped under a new secret (%d pools still hold the old one)", len(stale))
    return SecretChanged(sb.fs_uuid, stale)
