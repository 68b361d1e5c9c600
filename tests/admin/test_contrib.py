"""contrib/: alert rules (promtool), the Grafana dashboard, the systemd unit
(systemd-analyze, and sd_notify readiness from a real mount), the mount(8) helper, and
docs/METRICS.md against the metrics the daemon defines."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from repfs.admin.metrics import HELP, STANDARD
from tests.helpers import REPFS, Repfs, is_mounted, run_repfs

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
REPFS_BIN = Path(sys.executable).parent / "repfs"


def names_in(text: str) -> set[str]:
    """Metric families named in PromQL or docs (histogram suffixes folded)."""
    found = set(re.findall(r"\brepfs_[a-z_]+", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in found}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: scripts/install.sh --dev installs it (Debian package {name})"
    return path


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = tool("promtool")
    rules = CONTRIB / "prometheus" / "repfs-alerts.yml"
    res = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS: 11 rules found" in res.stdout, res.stdout + res.stderr
    res = subprocess.run(
        [promtool, "test", "rules", "repfs-alerts.test.yml"], capture_output=True, text=True, timeout=60,
        cwd=CONTRIB / "prometheus",
    )  # fmt: skip
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
    res = subprocess.run([promtool, "check", "config", str(CONTRIB / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    alerts = set(re.findall(r"- alert: (\w+)", rules.read_text()))
    assert {"RepfsPoolOverWarn", "RepfsPoolOverCritical", "RepfsPoolDown", "RepfsPoolFailed",
            "RepfsReplicaDeficitNotShrinking", "RepfsMountUnreachable", "RepfsJournalLagging",
            "RepfsBlocksUnrecoverable", "RepfsUploadsFailing", "RepfsScrubOverdue",
            "RepfsMountIOErrors"} <= alerts  # fmt: skip
    # every rule has a unit test that expects it to fire
    tests = (CONTRIB / "prometheus" / "repfs-alerts.test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    assert alerts == fired, alerts ^ fired
    # a broken rule is refused: the check above means something
    broken = rules.parent / "broken.tmp.yml"
    try:
        broken.write_text(rules.read_text().replace("repfs_pool_usage_ratio >=", "repfs_pool_usage_ratio >=>", 1))
        assert subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, timeout=60).returncode
    finally:
        broken.unlink(missing_ok=True)


def test_dashboard_and_rules_name_only_metrics_the_daemon_serves_and_the_docs_list_them_all() -> None:
    dashboard = json.loads((CONTRIB / "grafana" / "repfs-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("repfs_pool_usage_ratio" in e for e in exprs) and any("repfs_pool_state" in e for e in exprs)
    known = {n.removesuffix("_total") for n in HELP} | set(HELP)
    for source in ("\n".join(exprs), (CONTRIB / "prometheus" / "repfs-alerts.yml").read_text()):
        unknown = names_in(source) - known
        assert not unknown, unknown
    docs = (ROOT / "docs" / "METRICS.md").read_text()
    documented = names_in(docs)
    assert set(HELP) <= documented | {n for n in HELP if n.removesuffix("_total") in documented}
    assert not documented - known, documented - known
    # the standard process metrics are listed too, and no name of the past is left
    standard = set(re.findall(r"`((?:process|python)_[a-z_]+)`", docs))
    assert standard == set(STANDARD), standard ^ set(STANDARD)
    assert "repfs_stored_blocks" not in docs


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    unit = (CONTRIB / "systemd" / "repfs@.service").read_text()
    assert "Type=notify" in unit and "ExecStop=/usr/local/bin/repfs umount" in unit and "Restart=on-failure" in unit
    good = tmp_path / "repfs@main.service"
    good.write_text(unit.replace("/usr/local/bin/repfs", str(REPFS_BIN)))
    res = subprocess.run([analyze, "verify", str(good)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "repfs@main" not in res.stderr, res.stderr
    bad = tmp_path / "repfs@bad.service"
    bad.write_text(unit.replace("Type=notify", "Type=notifyy").replace("/usr/local/bin/repfs", str(REPFS_BIN)))
    res = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 or "notifyy" in res.stderr


def test_sd_notify_says_ready_once_mounted_and_stopping_at_unmount(repfs_factory: Callable[..., Repfs]) -> None:
    fs = repfs_factory()
    addr = fs.base / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        sock.settimeout(60)
        log = fs.base / "daemon-notify.log"
        fs.logs.append(log)
        cmd = [*REPFS, "mount", "--foreground", "--key-file", str(fs.key), str(fs.fs_dir), str(fs.mnt)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "NOTIFY_SOCKET": str(addr)})  # fmt: skip
        try:
            ready = sock.recv(4096).decode()
            assert ready.startswith("READY=1\n") and "STATUS=mounted" in ready, ready
            assert is_mounted(fs.mnt)
            (fs.mnt / "x").write_bytes(b"hello")
            assert run_repfs("umount", str(fs.mnt)).returncode == 0
            stopping = sock.recv(4096).decode()
            assert stopping.startswith("STOPPING=1"), stopping
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
