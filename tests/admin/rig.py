"""Tools the admin tests share: curl on the admin socket, repfs-admin, metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ADMIN = [sys.executable, "-m", "repfs.admin.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def curl(
    sock: Path, method: str, path: str, body: object | None = None, *, user: str | None = None,
    extra_groups: list[int] | None = None, raw_body: str | None = None,
) -> tuple[int, Any]:
    """(HTTP status, parsed JSON) of one request with the real curl; status 0 when curl
    could not connect at all."""
    cmd = ["curl", "-sS", "--max-time", "120", "--unix-socket", str(sock), "-X", method,
           "-w", "\n%{http_code}", f"http://repfs{path}"]  # fmt: skip
    if body is not None or raw_body is not None:
        data = raw_body if raw_body is not None else json.dumps(body)
        cmd += ["-H", "Content-Type: application/json", "--data-binary", data]
    # another user: its own primary group (nogroup) and only the supplementary groups given
    who = {"user": user, "group": "nogroup", "extra_groups": extra_groups or []} if user else {}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=150, **who)  # type: ignore[call-overload]
    out, _, code = res.stdout.rpartition("\n")
    status = int(code) if code.isdigit() else 0
    if status == 0:
        return 0, res.stderr
    return status, json.loads(out) if out.strip() else None


def admin(sock: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [*ADMIN, "--socket", str(sock), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def admin_json(sock: Path, *args: str) -> Any:
    res = admin(sock, *args, "--json")
    assert res.returncode == 0, f"repfs-admin {' '.join(args)}: {res.returncode}\n{res.stdout}{res.stderr}"
    return json.loads(res.stdout)


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)] of the metrics endpoint, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def sample(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float | None:
    for got, value in metrics.get(name, []):
        if all(got.get(k) == v for k, v in labels.items()):
            return value
    return None
