"""docs/ADMIN.md lists every endpoint the admin and user sockets serve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTE = re.compile(r'\.add\("([A-Z]+)", "(/v1[^"]*)"')


def test_every_endpoint_is_in_the_admin_doc() -> None:
    routes = set()
    for source in (ROOT / "repfs" / "admin").glob("*.py"):
        routes |= set(ROUTE.findall(source.read_text()))
    assert len(routes) > 30
    doc = (ROOT / "docs" / "ADMIN.md").read_text()
    missing = []
    for method, path in sorted(routes):
        shown = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), path)
        if not re.search(rf"`{method}[^`]*\s{re.escape(shown)}[`\[? ]", doc):
            missing.append(f"{method} {shown}")
    assert not missing, f"endpoints missing from docs/ADMIN.md: {missing}"
