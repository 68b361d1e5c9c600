"""Random sequences of file operations on the mount and on a plain directory must agree."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.mount.mountlib import RepfsMount

NAMES = st.sampled_from(["a", "b", "c", "d/a", "d/b", "d"])
BLOCK = 64 * 1024


def outcome(fn: Callable[[], Any]) -> Any:
    """The result of `fn`, or the errno it failed with."""
    try:
        return ("ok", fn())
    except OSError as exc:
        return ("error", exc.errno)


class FsModel(RuleBasedStateMachine):
    mnt: Path
    ref: Path

    def __init__(self) -> None:
        super().__init__()
        tag = uuid.uuid4().hex[:8]
        self.roots = (self.mnt / tag, self.ref / tag)
        for r in self.roots:
            r.mkdir()

    def both(self, op: Callable[[Path], Any]) -> Any:
        got, want = (outcome(lambda r=r: op(r)) for r in self.roots)
        assert got == want, (got, want)
        return got

    @rule(name=NAMES, offset=st.integers(0, 3 * BLOCK), size=st.integers(0, BLOCK + 100), seed=st.integers(0, 255))
    def write(self, name: str, offset: int, size: int, seed: int) -> None:
        data = bytes((seed + i) % 251 for i in range(size))

        def op(r: Path) -> int:
            fd = os.open(r / name, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                return os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

        self.both(op)

    @rule(name=NAMES, size=st.integers(0, 4 * BLOCK))
    def truncate(self, name: str, size: int) -> None:
        self.both(lambda r: os.truncate(r / name, size))

    @rule(name=NAMES)
    def read(self, name: str) -> None:
        self.both(lambda r: (r / name).read_bytes())

    @rule(name=NAMES)
    def unlink(self, name: str) -> None:
        self.both(lambda r: os.unlink(r / name))

    @rule(name=NAMES)
    def mkdir(self, name: str) -> None:
        self.both(lambda r: os.mkdir(r / name))

    @rule(name=NAMES)
    def rmdir(self, name: str) -> None:
        self.both(lambda r: os.rmdir(r / name))

    @rule(a=NAMES, b=NAMES)
    def rename(self, a: str, b: str) -> None:
        self.both(lambda r: os.rename(r / a, r / b))

    @rule(a=NAMES, b=NAMES)
    def link(self, a: str, b: str) -> None:
        self.both(lambda r: os.link(r / a, r / b))

    @rule(name=NAMES)
    def fsync(self, name: str) -> None:
        def op(r: Path) -> None:
            fd = os.open(r / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.both(op)

    @rule()
    def listing(self) -> None:
        def op(r: Path) -> list[tuple[str, int, bool]]:
            out = []
            for dirpath, _dirs, files in os.walk(r):
                for f in files:
                    s = os.stat(os.path.join(dirpath, f))
                    out.append((os.path.relpath(os.path.join(dirpath, f), r), s.st_size, s.st_nlink > 1))
            return sorted(out)

        self.both(op)


@pytest.fixture(scope="module")
def model_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepfsMount]:
    m = RepfsMount(tmp_path_factory.mktemp("model"))
    m.mkfs()
    m.mount()
    try:
        yield m
    finally:
        m.unmount()


@pytest.mark.timeout(300)
def test_mount_behaves_like_a_plain_directory(model_mount: RepfsMount, tmp_path: Path) -> None:
    FsModel.mnt = model_mount.mnt
    FsModel.ref = tmp_path
    run_state_machine_as_test(
        FsModel, settings=settings(max_examples=60, stateful_step_count=30, deadline=None)
    )
    assert "Traceback" not in model_mount.log_text()
