"""Fixtures for tests that mount repfs for real (tests/mount/).

- `repfs`: a fresh filesystem (3 pools, 2 replicas, 64 KiB blocks), mkfs'd and mounted.
- `repfs_factory`: makes more filesystems (`make(name, mkfs=True)`), unmounted.

A test marked `standalone` is about blocks as their own objects (`blocks/<hh>/<id>`): each
of its mounts says `--pack-max 0`. Packed blocks have their own tests (test_packs.py).

Every filesystem a test touched is unmounted at teardown, whatever happened, and the test
fails if a daemon logged an ERROR/CRITICAL line or a traceback it did not declare with
`fs.expect_log(regex)`. When a test fails, the daemon logs are added to its report.
A watchdog kills the daemons shortly before the test's timeout: a process blocked in a
FUSE request is freed only when the daemon ends, and then pytest-timeout can do its job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from pluggy import Result

from tests.helpers import MOUNTS, Repfs, check_logs, register


@pytest.fixture(autouse=True)
def _standalone_blocks(request: pytest.FixtureRequest) -> Iterator[None]:
    Repfs.standalone = request.node.get_closest_marker("standalone") is not None
    yield
    Repfs.standalone = False


@pytest.fixture
def repfs_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Repfs]]:
    made: list[Repfs] = []

    def make(name: str = "fs", *, mkfs: bool = True, **kwargs: object) -> Repfs:
        fs = Repfs(tmp_path / name, **kwargs)  # type: ignore[arg-type]
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


@pytest.fixture
def repfs(repfs_factory: Callable[..., Repfs]) -> Repfs:
    fs = repfs_factory()
    fs.mount()
    return fs


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    return float(item.config.getini("timeout") or 0)


@pytest.fixture(autouse=True)
def _mount_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    timeout = _timeout_of(request.node)
    if timeout <= 0:
        yield
        return

    def fire() -> None:
        for fs in list(Repfs.live):
            fs.emergency_stop()

    timer = threading.Timer(max(timeout * 0.9, timeout - 15), fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for fs in item.stash.get(MOUNTS, []):
            report.sections.append((f"daemon log of {fs} ({call.when})", fs.log_tail(150) or "(empty)"))
