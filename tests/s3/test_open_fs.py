"""Opening a filesystem whose pools are partly unreachable (volume.open_fs, no mount):
unreachable pools are named and start out down; with fewer reachable pools than the
write quorum the filesystem is not opened."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from repfs.config import FsConfig, PoolSpec, load_config
from repfs.errors import SetupError
from repfs.volume import FsPaths, mkfs, open_fs, write_config
from tests.s3.rig import write_credentials
from tests.seaweed import WeedServer

SECRET = b"correct horse battery staple"


async def make_mixed(tmp_path: Path, weeds: list[WeedServer], *, write_quorum: int) -> Path:
    """A filesystem on one local pool and two S3 pools; its directory."""
    creds = write_credentials(tmp_path / "creds.toml", weeds[0])
    s3 = [
        PoolSpec(f"s3p{i}", s.url(s.make_bucket(), "fs"), credentials_file=str(creds))
        for i, s in enumerate(weeds[:2], start=1)
    ]
    pools = (PoolSpec("local", f"file://{tmp_path / 'local'}"), *s3)
    config = FsConfig(pools=pools, replicas=2, write_quorum=write_quorum, block_size=1 << 16)
    fs_dir = tmp_path / "fs"
    await mkfs(fs_dir, config, SECRET, uid=os.getuid(), gid=os.getgid())
    return fs_dir


def edit_pool(fs_dir: Path, name: str, **changes: object) -> None:
    path = FsPaths(fs_dir).config
    config = load_config(path)
    pools = tuple(replace(p, **changes) if p.name == name else p for p in config.pools)  # type: ignore[arg-type]
    write_config(path, replace(config, pools=pools))


@pytest.mark.trio
async def test_all_pools_reachable(tmp_path: Path, weeds: list[WeedServer]) -> None:
    fs_dir = await make_mixed(tmp_path, weeds, write_quorum=2)
    opened = await open_fs(fs_dir, SECRET)
    assert opened.unreachable == {}
    assert sorted(opened.pools) == ["local", "s3p1", "s3p2"]
    await opened.close()


@pytest.mark.trio
async def test_a_missing_local_directory_is_an_unreachable_pool(
    tmp_path: Path, weeds: list[WeedServer], caplog: pytest.LogCaptureFixture
) -> None:
    fs_dir = await make_mixed(tmp_path, weeds, write_quorum=2)
    shutil.move(tmp_path / "local", tmp_path / "moved-away")  # e.g. its disk is not mounted
    with caplog.at_level(logging.WARNING, logger="repfs.volume"):
        opened = await open_fs(fs_dir, SECRET)
    assert list(opened.unreachable) == ["local"]
    assert "missing" in opened.unreachable["local"]
    assert "pool local is unreachable at mount; it starts out down" in caplog.text
    assert not (tmp_path / "local").exists()  # opening never makes a pool's directory
    await opened.close()


@pytest.mark.trio
async def test_fewer_reachable_pools_than_the_write_quorum_is_refused(tmp_path: Path, weeds: list[WeedServer]) -> None:
    fs_dir = await make_mixed(tmp_path, weeds, write_quorum=2)
    shutil.move(tmp_path / "local", tmp_path / "moved-away")
    wrong = write_credentials(tmp_path / "wrong.toml", weeds[1], secret="not-the-secret-at-all")
    edit_pool(fs_dir, "s3p2", credentials_file=str(wrong))
    with pytest.raises(SetupError) as info:
        await open_fs(fs_dir, SECRET)
    message = str(info.value)
    assert message.startswith("only 1 of 3 pools can be reached, fewer than the write quorum (2): not mounting.")
    assert "local: pool local: root directory" in message
    assert f"s3p2: pool s3p2: credentials rejected by http://{weeds[1].endpoint}" in message
    assert "not-the-secret-at-all" not in message and weeds[1].secret_key not in message


@pytest.mark.trio
async def test_a_missing_bucket_is_an_unreachable_pool(tmp_path: Path, weeds: list[WeedServer]) -> None:
    fs_dir = await make_mixed(tmp_path, weeds, write_quorum=1)
    edit_pool(fs_dir, "s3p1", url=weeds[0].url("bucket-that-is-gone", "fs"))
    opened = await open_fs(fs_dir, SECRET)
    assert "bucket bucket-that-is-gone does not exist on pool s3p1" in opened.unreachable["s3p1"]
    await opened.close()
