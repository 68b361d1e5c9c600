"""Fixtures for tests against real SeaweedFS servers (see tests/seaweed.py).

- `weeds`: 3 plain-HTTP servers shared by the whole session (one identity); each test
  makes its own buckets, so tests never see each other's objects, and they are deleted
  after the test.
- `tls_weed`: one shared server that speaks HTTPS only, with a certificate of its own CA.
- `weed_factory`: servers of a test's own (function scope), for tests that stop them.
- `s3fs_factory`: `S3Repfs` filesystems over buckets on given servers; like
  `repfs_factory`, everything is unmounted at teardown and daemon logs are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.helpers import check_logs, register
from tests.s3.rig import S3Repfs
from tests.seaweed import WeedServer, server_set, shared_servers, start_all, stop_all


@pytest.fixture(scope="session")
def weeds(tmp_path_factory: pytest.TempPathFactory) -> list[WeedServer]:
    return shared_servers(tmp_path_factory.getbasetemp(), 3)


@pytest.fixture(autouse=True)
def _drop_buckets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's buckets on the shared servers are deleted after it (torn down last)."""
    yield
    for name in ("weeds", "tls_weed"):
        if name in request.fixturenames:
            value = request.getfixturevalue(name)
            for server in value if isinstance(value, list) else [value]:
                server.drop_buckets()


@pytest.fixture(scope="session")
def tls_weed(tmp_path_factory: pytest.TempPathFactory) -> WeedServer:
    return shared_servers(tmp_path_factory.getbasetemp(), 1, tls=True)[0]


@pytest.fixture
def weed_factory(tmp_path: Path) -> Iterator[Callable[..., list[WeedServer]]]:
    made: list[WeedServer] = []

    def make(count: int = 3, *, tls: bool = False) -> list[WeedServer]:
        servers = server_set(tmp_path / f"own{len(made)}", count, tls=tls)
        made.extend(servers)
        start_all(servers)
        return servers

    yield make
    stop_all(made)


@pytest.fixture
def s3fs_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., S3Repfs]]:
    made: list[S3Repfs] = []

    def make(servers: Sequence[WeedServer], name: str = "fs", *, mkfs: bool = True, **kwargs: object) -> S3Repfs:
        fs = S3Repfs(tmp_path / name, servers, **kwargs)  # type: ignore[arg-type]
        made.append(fs)
        register(request.node, fs)
        if mkfs:
            fs.mkfs()
        return fs

    yield make
    errors = []
    for fs in made:
        try:
            fs.cleanup()
        except (AssertionError, OSError) as exc:
            errors.append(f"{fs}: {exc}")
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)
    for fs in made:
        check_logs(fs)
