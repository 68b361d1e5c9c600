"""Fixtures for tests against real S3 servers: SeaweedFS (tests/seaweed.py), and Ceph RGW
(tests/ceph.py) where a test asks for it.

- `weeds`: 3 plain-HTTP servers shared by the whole session (one identity); each test
  makes its own buckets, so tests never see each other's objects, and they are deleted
  after the test.
- `tls_weed`: one shared server that speaks HTTPS only, with a certificate of its own CA.
- `ceph`: a single-node Ceph cluster with radosgw, started once per session; a test that
  stops its radosgw starts it again (else the next test that asks does).
- `s3_server`: each test that takes it runs twice, on a shared SeaweedFS server and on
  the shared Ceph RGW.
- `weed_factory`: servers of a test's own (function scope), for tests that stop them;
  `like=server` gives them that server's identity.
- `s3fs_factory`: `S3Repfs` filesystems over buckets on given servers; like
  `repfs_factory`, everything is unmounted at teardown and daemon logs are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.ceph import CephCluster, shared_cluster
from tests.helpers import check_logs, register
from tests.s3.rig import S3Repfs, S3Server
from tests.seaweed import WeedServer, server_set, shared_servers, start_all, stop_all

S3_SERVERS = ["seaweed", "ceph"]


@pytest.fixture(scope="session")
def weeds(tmp_path_factory: pytest.TempPathFactory) -> list[WeedServer]:
    return shared_servers(tmp_path_factory.getbasetemp(), 3)


@pytest.fixture(autouse=True)
def _drop_buckets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's buckets on the shared servers are deleted after it (torn down last)."""
    yield
    values = getattr(request.node, "funcargs", {})  # the test's fixture values, still there
    for name in ("weeds", "tls_weed", "ceph", "s3_server"):
        if name in values:
            value = values[name]
            for server in value if isinstance(value, list) else [value]:
                server.drop_buckets()


@pytest.fixture(scope="session")
def tls_weed(tmp_path_factory: pytest.TempPathFactory) -> WeedServer:
    return shared_servers(tmp_path_factory.getbasetemp(), 1, tls=True)[0]


@pytest.fixture
def ceph(tmp_path_factory: pytest.TempPathFactory) -> CephCluster:
    return shared_cluster(tmp_path_factory.getbasetemp())


@pytest.fixture(params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> S3Server:
    if request.param == "ceph":
        return shared_cluster(tmp_path_factory.getbasetemp())
    return shared_servers(tmp_path_factory.getbasetemp(), 3)[0]


@pytest.fixture
def weed_factory(tmp_path: Path) -> Iterator[Callable[..., list[WeedServer]]]:
    made: list[WeedServer] = []

    def make(count: int = 3, *, tls: bool = False, like: S3Server | None = None) -> list[WeedServer]:
        base = tmp_path / f"own{len(made)}"
        if like is None:
            servers = server_set(base, count, tls=tls)
        else:
            servers = [
                WeedServer(base / f"weed{i + 1}", tls=tls, access_key=like.access_key, secret_key=like.secret_key)
                for i in range(count)
            ]
        made.extend(servers)
        start_all(servers)
        return servers

    yield make
    stop_all(made)


@pytest.fixture
def s3fs_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., S3Repfs]]:
    made: list[S3Repfs] = []

    def make(servers: Sequence[S3Server], name: str = "fs", *, mkfs: bool = True, **kwargs: object) -> S3Repfs:
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
