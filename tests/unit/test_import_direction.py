"""Imports run one way: from the transports (FUSE, admin socket, CLI) down through the
factory and the control plane to the filesystem core, the metadata, the cache, the codec
and the pools; never up, and never in a cycle. Read from the source with ast, so a
type-only import counts too: it is coupling all the same."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import repfs

PACKAGE = Path(repfs.__file__).parent

# A module may import from its own rank and below. The longest matching prefix decides.
RANKS = {
    # the ground every layer may use: errors, settings, small helpers
    "repfs": 0,
    "repfs.errors": 0,
    "repfs.config": 0,
    "repfs.heap": 0,
    "repfs.inline": 0,
    "repfs.logs": 0,
    "repfs.progress": 0,
    "repfs.mountopts": 0,
    "repfs.mountinfo": 0,
    "repfs.cli_common": 0,
    # the stack, bottom up
    "repfs.backend": 1,
    "repfs.codec": 2,
    "repfs.meta": 3,
    "repfs.blocks": 4,
    "repfs.cache": 5,
    "repfs.journal": 5,
    "repfs.lease": 5,
    "repfs.fs": 5,
    "repfs.volume": 6,
    "repfs.fslock": 6,
    # the control plane beside the stack (pool health lives in backend/ but decides
    # pool states from superblocks: it is control plane)
    "repfs.backend.health": 7,
    "repfs.control": 7,
    # the one factory
    "repfs.stack": 8,
    # operations and transports on top; the status snapshot reads the whole stack
    "repfs.control.status": 9,
    "repfs.fsck": 9,
    "repfs.recovery": 9,
    "repfs.fuse": 9,
    "repfs.admin": 9,
    "repfs.mount": 10,
    "repfs.web": 10,  # its own process: talks to the daemon over the user socket, files through the mount
    "repfs.cli_maintenance": 11,
    "repfs.cli": 11,
    "repfs.mount_helper": 12,
    "repfs.manpages": 12,
}


def rank(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in RANKS:
            return RANKS[prefix]
    raise AssertionError(f"{module} has no rank: add it to RANKS")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("repfs", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                base = node.module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t.split(".")[0] == "repfs" and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_rank() -> None:
    for name in modules():
        rank(name)


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} (rank {rank(a)}) imports {b} (rank {rank(b)})"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if rank(b) > rank(a)
    ]


def test_no_import_runs_up() -> None:
    found = upward(import_graph())
    assert not found, "\n".join(found)


def test_no_import_cycle() -> None:
    assert not cycles(import_graph())


def test_the_checks_see_a_violation() -> None:
    """The checks themselves catch an upward import and a cycle."""
    graph = {
        "repfs.backend.s3": {"repfs.fs.core"},
        "repfs.fs.core": {"repfs.meta.store"},
        "repfs.meta.store": {"repfs.fs.core"},
    }
    assert upward(graph) == [
        "repfs.backend.s3 (rank 1) imports repfs.fs.core (rank 5)",
        "repfs.meta.store (rank 3) imports repfs.fs.core (rank 5)",
    ]
    assert cycles(graph) == [["repfs.fs.core", "repfs.meta.store"]]
    assert import_graph()["repfs.mount"] >= {"repfs.stack", "repfs.fuse.ops"}  # the real graph is read
