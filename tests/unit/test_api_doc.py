"""The OpenAPI document and docs/API.md name every route `repfs web` serves."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from repfs.web import openapi
from repfs.web.app import Api, WebOptions
from repfs.web.control import Control
from repfs.web.files import Tree
from repfs.web.sessions import Sessions
from repfs.web.uploads import Uploads

ROOT = Path(__file__).resolve().parents[2]


def routes(tmp_path: Path) -> set[tuple[str, str]]:
    api = Api(Tree("/nonexistent"), Control(tmp_path / "sock"), Sessions(tmp_path / "s.sqlite"),
              Uploads(tmp_path / "u.sqlite"), WebOptions())  # fmt: skip
    out = set()
    for route in api.app().routes:
        assert isinstance(route, Route)
        methods = route.methods or set()
        for method in methods:
            if method != "HEAD" or "GET" not in methods:  # Starlette answers HEAD for every GET
                out.add((method, route.path.replace("{path:path}", "{path}")))
    return out


def test_the_openapi_document_names_every_route(tmp_path: Path) -> None:
    served = routes(tmp_path)
    assert len(served) >= 14
    documented = {(m.upper(), p) for p, ops in openapi.DOCUMENT["paths"].items() for m in ops}
    assert served == documented, served ^ documented


def test_the_api_doc_names_every_route(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "API.md").read_text()
    missing = []
    for method, path in sorted(routes(tmp_path)):
        shown = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), path)
        if not re.search(rf"`{method} {re.escape(shown)}[`?]", doc):
            missing.append(f"{method} {shown}")
    assert not missing, f"routes missing from docs/API.md: {missing}"
