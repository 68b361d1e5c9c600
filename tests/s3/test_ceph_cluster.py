"""The Ceph test cluster itself (tests/ceph.py): a start that fails says why and leaves no
daemon behind; a missing Ceph is named with the packages to install."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests import ceph as ceph_rig
from tests.ceph import CephCluster, CephError
from tests.seaweed import HOST


def processes_under(directory: Path) -> list[str]:
    """Command lines of the processes that name `directory` (every daemon names its conf)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            if str(directory) in cmdline:
                found.append(cmdline)
    return found


def test_a_cluster_that_cannot_start_says_why_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ceph_rig, "PORT_TRIES", 1)  # no second try on other ports
    cluster = CephCluster(tmp_path / "ceph")
    with socket.socket() as squatter:  # radosgw's port, taken
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, cluster.ports["rgw"]))
        squatter.listen()
        with pytest.raises(CephError) as info:
            cluster.start(timeout=30)
    message = str(info.value)
    assert "radosgw does not answer S3 requests" in message
    # EADDRINUSE (98); now and then radosgw crashes on the taken port instead (killed by a signal)
    assert re.search(r"rgw exited with status (98|-[0-9]+)\)", message), message[:400]
    assert f"{cluster.dir}/log/client.rgw.log" in message  # the log that says more, and its tail
    assert cluster.procs == {}
    assert processes_under(cluster.dir) == []
    with pytest.raises(CephError, match="has no S3 user"):
        _ = cluster.secret_key


def test_missing_ceph_programs_are_named_with_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceph_rig, "BINARIES", ("ceph-mon", "no-such-ceph-daemon"))
    with pytest.raises(CephError, match=r"missing: no-such-ceph-daemon\): apt-get install ceph-mon ceph-osd radosgw"):
        ceph_rig.ceph_binaries()
