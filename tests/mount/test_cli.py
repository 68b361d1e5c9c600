"""Passphrases and bad input at the command line: exit codes, one-line messages, no changes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Repfs, is_mounted, lock_is_free, make_key, run_repfs

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Repfs]


def state(fs: Repfs) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Everything on the pools and in FS_DIR (but lock files and logs), hashed."""
    return fs.pools_digest(), fs.fs_dir_digest()


def mount_cmd(fs: Repfs, *extra: str, key: Path | None = None, foreground: bool = False) -> list[str]:
    args = ["mount", str(fs.fs_dir), str(fs.mnt), "--key-file", str(key or fs.key), *extra]
    return [*args, "--foreground"] if foreground else args


def refused(
    fs: Repfs, res: subprocess.CompletedProcess[str], code: int | None, *words: str, usage: bool = False
) -> str:
    """Check a refused command: its exit code, one line on stderr naming `words`, nothing mounted.

    `usage`: an option click itself rejects; click's own format (usage, hint, "Error: ...") is fine.
    """
    msg = res.stderr.strip()
    if code is None:
        assert res.returncode != 0, f"expected a failure, got exit 0: {res.stdout}"
    else:
        assert res.returncode == code, f"expected exit {code}, got {res.returncode}: {msg}"
    assert msg, "no message on stderr"
    if usage:
        msg = msg.splitlines()[-1]
        assert msg.startswith("Error:"), msg
    assert len(msg.splitlines()) == 1, f"expected one line on stderr, got:\n{msg}"
    assert "Traceback" not in msg
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    assert not is_mounted(fs.mnt)
    assert lock_is_free(fs.fs_dir), "a daemon is still running"
    return msg


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_wrong_key_is_refused_and_changes_nothing(repfs_factory: Factory, foreground: bool) -> None:
    fs = repfs_factory()
    fs.mount()
    (fs.mnt / "keep").write_bytes(b"precious")
    fs.unmount()
    wrong = make_key(fs.base / "wrong")
    before = state(fs)
    res = run_repfs(*mount_cmd(fs, key=wrong, foreground=foreground))
    if foreground:  # the daemon's own log goes to stderr too: the message once, no traceback
        assert res.returncode == 3
        assert res.stderr.count("repfs: error: wrong passphrase") == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert not is_mounted(fs.mnt)
    else:
        refused(fs, res, 3, "wrong passphrase")
    assert state(fs) == before
    fs.mount()
    assert (fs.mnt / "keep").read_bytes() == b"precious"


def test_passwd_rotates_the_key(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    fs.mount()
    (fs.mnt / "keep").write_bytes(b"precious" * 30000)
    fs.unmount()
    blocks_before = {p.name: fs.pool_objects(p) for p in fs.pools}
    new = make_key(fs.base / "new")
    wrong = make_key(fs.base / "wrong")
    before = state(fs)
    res = run_repfs("passwd", str(fs.fs_dir), "--key-file", str(wrong), "--new-key-file", str(new))
    refused(fs, res, 3, "wrong passphrase")
    assert state(fs) == before
    run_repfs("passwd", str(fs.fs_dir), "--key-file", str(fs.key), "--new-key-file", str(new), check=True)
    assert {p.name: fs.pool_objects(p) for p in fs.pools} == blocks_before  # no data rewritten
    refused(fs, run_repfs(*mount_cmd(fs)), 3, "wrong passphrase")
    fs.mount(key=new)
    assert (fs.mnt / "keep").read_bytes() == b"precious" * 30000
    fs.unmount()
    # a passphrase from a file descriptor works as well
    r, w = os.pipe()
    os.write(w, b"correct horse battery staple\n")
    os.close(w)
    res = run_repfs("passwd", str(fs.fs_dir), "--key-file", str(new), "--new-passphrase-fd", str(r), pass_fds=[r])
    os.close(r)
    assert res.returncode == 0, res.stderr
    refused(fs, run_repfs(*mount_cmd(fs, key=new)), 3)
    r, w = os.pipe()
    os.write(w, b"correct horse battery staple\n")
    os.close(w)
    res = run_repfs("mount", str(fs.fs_dir), str(fs.mnt), "--passphrase-fd", str(r), pass_fds=[r])
    os.close(r)
    assert res.returncode == 0, res.stderr
    try:
        assert (fs.mnt / "keep").read_bytes() == b"precious" * 30000
    finally:
        assert run_repfs("umount", str(fs.mnt)).returncode == 0


def test_mkfs_twice_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    before = state(fs)
    args = ["mkfs", str(fs.fs_dir), "--key-file", str(fs.key), *(f"--pool=file://{p}" for p in fs.pools)]
    refused(fs, run_repfs(*args), 5, str(fs.fs_dir))
    other = fs.base / "other-fs"  # a new FS_DIR, but pools that belong to another filesystem
    msg = refused(fs, run_repfs("mkfs", str(other), "--key-file", str(fs.key), f"--pool=file://{fs.pools[0]}"), 5)
    assert "pool1" in msg
    assert state(fs) == before
    assert not (other / "repfs.toml").exists()
    fs.mount()


def test_foreign_pool_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory("mine")
    other = repfs_factory("other")
    config = fs.fs_dir / "repfs.toml"
    config.write_text(config.read_text().replace(str(fs.pools[1]), str(other.pools[1])))
    before, other_before = state(fs), state(other)
    refused(fs, run_repfs(*mount_cmd(fs)), 4, "pool2", "belongs to")
    assert state(fs) == before and state(other) == other_before


def test_pool_swapped_on_disk_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory("mine")
    other = repfs_factory("other")
    os.rename(fs.pools[2], fs.base / "pool3-aside")
    shutil.copytree(other.pools[2], fs.pools[2])
    refused(fs, run_repfs(*mount_cmd(fs)), 4, "pool3")


def test_a_missing_pool_dir_is_a_down_pool_and_never_created(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    os.rename(fs.pools[1], fs.base / "gone")  # its disk is not mounted
    fs.expect_log(r"pool2")
    fs.mount()
    assert re.search(r"pool pool2 is now down: unreachable at mount", fs.log_text()), fs.log_tail()
    data = os.urandom(3 * fs.block_bytes)
    (fs.mnt / "f").write_bytes(data)
    fs.remount()
    assert (fs.mnt / "f").read_bytes() == data
    fs.unmount()
    assert not fs.pools[1].exists(), "the missing pool's directory was created: data would go to the wrong disk"


def test_all_pools_missing_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    for p in fs.pools:
        os.rename(p, p.with_name(p.name + "-gone"))
    res = run_repfs(*mount_cmd(fs))
    if res.returncode == 0:
        run_repfs("umount", str(fs.mnt))
    refused(fs, res, None, "pool")


CONFIG_ERRORS: dict[str, tuple[Callable[[str], str], str]] = {
    "unknown-top-key": (lambda t: "replicsa = 2\n" + t, "replicsa"),
    "unknown-pool-key": (lambda t: t.replace("[[pools]]", "[[pools]]\nwieght = 2", 1), "wieght"),
    "replicas-not-a-number": (lambda t: t.replace("replicas = 2", 'replicas = "two"'), "replicas"),
    "weight-not-a-number": (lambda t: t.replace("weight = 1.0", 'weight = "heavy"', 1), "weight"),
    "too-many-replicas": (lambda t: t.replace("replicas = 2", "replicas = 5"), "replicas"),
    "not-toml": (lambda t: "this is not toml = = =\n", "repfs.toml"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_error_is_refused(repfs_factory: Factory, case: str) -> None:
    edit, word = CONFIG_ERRORS[case]
    fs = repfs_factory()
    config = fs.fs_dir / "repfs.toml"
    original = config.read_text()
    config.write_text(edit(original))
    before = state(fs)
    refused(fs, run_repfs(*mount_cmd(fs)), 2, word)
    assert state(fs) == before
    config.write_text(original)
    fs.mount()


def test_unwritable_cache_dir_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    before = state(fs)
    refused(fs, run_repfs(*mount_cmd(fs, "--cache-dir", "/proc/foo")), None, "/proc/foo")
    assert state(fs) == before
    fs.mount()  # and the default cache dir still works afterwards


def test_missing_mountpoint_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    before = state(fs)
    missing = fs.base / "no-such-dir"
    res = run_repfs("mount", str(fs.fs_dir), str(missing), "--key-file", str(fs.key))
    refused(fs, res, None, str(missing))
    assert not missing.exists()
    (fs.base / "a-file").write_bytes(b"")
    res = run_repfs("mount", str(fs.fs_dir), str(fs.base / "a-file"), "--key-file", str(fs.key))
    refused(fs, res, 2, "a-file", usage=True)  # click checks this one
    assert state(fs) == before


def test_bad_mkfs_options_are_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory(mkfs=False)
    pools = [f"--pool=file://{p}" for p in fs.pools]
    for extra, word, usage in (
        (["--block-size", "3K"], "block", False),
        (["--block-size", "lots"], "size", True),
        (["--replicas", "4"], "replicas", False),
        (["--replicas", "0"], "replicas", False),
        (["--write-quorum", "3"], "quorum", False),
    ):
        res = run_repfs("mkfs", str(fs.fs_dir), "--key-file", str(fs.key), *pools, *extra)
        refused(fs, res, 2, word, usage=usage)
        assert not fs.fs_dir.exists(), extra
        assert not any(p.exists() and any(p.iterdir()) for p in fs.pools), extra
    short = fs.base / "short"
    short.write_bytes(b"tooshort")
    short.chmod(0o600)
    refused(fs, run_repfs("mkfs", str(fs.fs_dir), "--key-file", str(short), *pools), 2, "short")
    fs.key.chmod(0o644)
    refused(fs, run_repfs("mkfs", str(fs.fs_dir), "--key-file", str(fs.key), *pools), 2, "chmod 600")
    assert not fs.fs_dir.exists()


def test_bad_read_ahead_is_refused(repfs_factory: Factory) -> None:
    fs = repfs_factory()
    before = state(fs)
    for size, word in (("1G", "256M"), ("100", "4K"), ("lots", "size")):
        refused(fs, run_repfs(*mount_cmd(fs, "--read-ahead", size)), 2, word, usage=True)
    assert state(fs) == before


def test_second_mount_of_the_same_filesystem_is_refused(repfs: Repfs, tmp_path: Path) -> None:
    (repfs.mnt / "f").write_bytes(b"x")
    other = tmp_path / "second-mnt"
    other.mkdir()
    res = run_repfs("mount", str(repfs.fs_dir), str(other), "--key-file", str(repfs.key))
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "already mounted" in res.stderr
    assert not is_mounted(other)
    assert (repfs.mnt / "f").read_bytes() == b"x"
    res = run_repfs("umount", str(other))
    assert res.returncode == 2 and "not a mounted repfs" in res.stderr
