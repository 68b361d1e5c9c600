"""`repfs-admin history pools`: the pools' usage samples and state changes that the daemon
keeps in FS_DIR/history.sqlite (also readable with sqlite3)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import click

from repfs.admin.cliutil import call, die, json_option, show, table, when
from repfs.config import parse_age


def _shown(answer: dict[str, Any]) -> str:
    states = [[when(s["at"]), s["pool"], s["state"], s["reason"] or "-"] for s in answer["states"]]
    last: dict[str, dict[str, Any]] = {}
    for sample in answer["usage"]:
        last[sample["pool"]] = sample
    def size(n: int | None) -> str:
        return str(n) if n is not None else "-"

    usage = [[p, u["state"], size(u["used"]), size(u["total"]), when(u["at"])] for p, u in sorted(last.items())]
    out = table(states, ["WHEN", "POOL", "STATE", "REASON"]) if states else "no state changes"
    samples = len(answer["usage"])
    return out + f"\n\n{samples} usage samples; the last of each pool:\n" + (
        table(usage, ["POOL", "STATE", "USED", "TOTAL", "AT"]) if usage else "none")


@click.group()
def history() -> None:
    """What the daemon kept of the pools: usage samples and state changes."""


@history.command("pools")
@click.option("--pool", help="One pool only.")
@click.option("--since", default="1d", show_default=True, metavar="AGE", help="How far back (e.g. 30m, 12h, 30d).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=10_000, show_default=True)
@json_option
@click.pass_context
def history_pools(ctx: click.Context, pool: str | None, since: str, limit: int, as_json: bool) -> None:
    """Usage samples and state changes of the pools, oldest first."""
    try:
        start = time.time() - parse_age(since)
    except ValueError as exc:
        die(str(exc), 2)
    query = {"since": f"{start:.3f}", "limit": str(limit)} | ({"pool": pool} if pool else {})
    show(call(ctx, "GET", f"/v1/history/pools?{urlencode(query)}"), as_json, _shown)
