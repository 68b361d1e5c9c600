"""`repfs-admin`: the administrator's command for a mounted repfs filesystem.

It talks to the daemon's admin socket (see repfs/admin/service.py and docs/ADMIN.md).
Every command takes --json (the daemon's answer, as JSON, for scripts); otherwise it
prints aligned tables. Long operations (`pools drain --wait`, `scrub`) show a progress
bar with the rate and the time left.

Exit codes:
  0  success
  1  the daemon failed (HTTP 500), or a scrub left blocks incomplete (a pool not up)
  2  bad usage or a bad value (HTTP 400)
  3  permission denied (HTTP 403): not root nor in the admin group
  4  no such pool or endpoint (HTTP 404)
  5  refused (HTTP 409): e.g. removing a pool that holds the only copy of a block
  6  a scrub found blocks with no good copy left
  7  the daemon cannot be reached (not mounted, no socket, not allowed to connect)
  8  timed out waiting (--timeout)
  9  a pool the request needs does not answer, or the daemon is busy (HTTP 503): ask again
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from repfs import __version__
from repfs.admin.cli_history import history
from repfs.admin.cli_holds import hold
from repfs.admin.cli_locks import locks
from repfs.admin.cli_mail import mail
from repfs.admin.cli_retention import info, retention
from repfs.admin.cli_shares import shares
from repfs.admin.cli_users import users
from repfs.admin.cliutil import (
    EXIT_TIMEOUT,
    EXIT_UNRECOVERABLE,
    POLL,
    call,
    die,
    emit,
    fields,
    in_mount,
    json_option,
    pct,
    show,
    size,
    table,
)
from repfs.cli_common import DEFAULT_SCRUB_RATE, get_secret, new_secret_options, secret_options
from repfs.errors import RepfsError
from repfs.progress import Progress

F = TypeVar("F", bound=Callable[..., Any])


def pool_rows(pools: list[dict[str, Any]]) -> str:
    rows = []
    for p in pools:
        drain = p.get("drain")
        if drain:
            left = drain["remaining"] if drain["remaining"] is not None else "?"
            note = "drained" if drain["done"] else f"{left} left"
        else:
            note = ""
        rows.append(
            [p["name"], p["state"], f"{p['weight']:g}", size(p["used"]), size(p["total"]), pct(p["usage_ratio"]),
             f"{pct(p['warn_threshold'])}/{pct(p['critical_threshold'])}", p["level"], note, p["url"]]
        )  # fmt: skip
    return table(rows, ["POOL", "STATE", "WEIGHT", "USED", "CAPACITY", "USE", "WARN/CRIT", "LEVEL", "DRAIN", "URL"])


# --- the command ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="repfs-admin")
@click.option("--socket", type=click.Path(dir_okay=False, path_type=Path), help="The admin socket of the mount.")
@click.option(
    "-m", "--mount", "mountpoint", type=click.Path(file_okay=False, path_type=Path), help="The mount point to manage."
)
@click.option(
    "-d", "--fs-dir", type=click.Path(file_okay=False, path_type=Path), help="The filesystem directory (FS_DIR)."
)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for one answer of the daemon.")
@click.pass_context
def main(ctx: click.Context, socket: Path | None, mountpoint: Path | None, fs_dir: Path | None, timeout: float) -> None:
    """Manage a mounted repfs filesystem: status, pools, scrub, repair.

    The mount is found from --socket, $REPFS_ADMIN_SOCKET, -m MOUNTPOINT or -d FS_DIR;
    without any, the one repfs mount of this host. Exit codes: 0 ok, 1 the daemon failed,
    2 bad input, 3 permission denied, 4 no such pool, 5 refused, 6 unrecoverable blocks,
    7 daemon unreachable, 8 timed out.
    """
    ctx.obj = {"socket": socket, "mountpoint": mountpoint, "fs_dir": fs_dir, "timeout": timeout}


@main.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The filesystem, its pools, alerts, repair, scrub, cache and journal."""
    st = call(ctx, "GET", "/v1/status")
    if as_json:
        emit(st)
        return
    click.echo(f"filesystem  {st['fs_uuid']}  mounted on {st['mountpoint']} "
               f"(pid {st['pid']}, up {st['uptime_seconds']:.0f} s)")  # fmt: skip
    click.echo(f"            {st['fs_dir']}: {st['replicas']} replicas, write quorum {st['write_quorum']}, "
               f"{st['block_size'] >> 10} KiB blocks")  # fmt: skip
    click.echo("")
    click.echo(pool_rows(st["pools"]))
    click.echo("")
    rep = st["repair"]
    click.echo(f"repair      {rep['deficit']} blocks to repair or move; {rep['repaired']} copies written, "
               f"{rep['removed']} removed, {rep['unrecoverable']} unrecoverable")  # fmt: skip
    sc = st["scrub"]
    if sc["running"]:
        click.echo(f"scrub       running: {sc['done']} of {sc['total']} blocks")
    elif sc["report"]:
        click.echo(f"scrub       last: {sc['report']['summary']}")
    c, j = st["cache"], st["journal"]
    click.echo(f"cache       {size(c['dirty_bytes'])} dirty ({c['upload_queue']} blocks to upload), "
               f"{size(c['clean_bytes'])} clean of {size(c['limit_bytes'])}")  # fmt: skip
    click.echo(f"journal     change {j['seq']}, {j['lag']} not yet on the pools")
    a = st["accounts"]
    moved = f"; NOT ON THIS HOST (name or uid changed): {', '.join(a['not_on_host'])}" if a["not_on_host"] else ""
    click.echo(f"accounts    {a['total']}, {a['refused']} disabled or expired{moved}")
    sharing = st.get("sharing", {})
    click.echo(f"sharing     {sharing.get('shares', 0)} shares, {sharing.get('locks', 0)} files locked now")
    click.echo("")
    if st["alerts"]:
        for alert in st["alerts"]:
            click.echo(f"ALERT: {alert}")
    else:
        click.echo("no alerts")


@main.group()
def pools() -> None:
    """List, add, reweight, drain, remove and clear pools."""


@pools.command("list")
@json_option
@click.pass_context
def pools_list(ctx: click.Context, as_json: bool) -> None:
    """Every pool: state, weight, usage against thresholds, drain progress."""
    show(call(ctx, "GET", "/v1/pools"), as_json, lambda a: pool_rows(a["pools"]))


@pools.command("show")
@click.argument("name")
@json_option
@click.pass_context
def pools_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One pool in full."""
    info = call(ctx, "GET", f"/v1/pools/{name}")
    if as_json:
        emit(info)
        return
    click.echo(fields(info))


@pools.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--weight", type=float, default=1.0, show_default=True, help="Share of the blocks.")
@click.option("--capacity", metavar="SIZE", help="Bytes the pool may hold, e.g. 500G.")
@click.option("--warn", metavar="RATIO", help="Warn threshold, e.g. 0.8 or 80% [default: 80%].")
@click.option("--critical", metavar="RATIO", help="Critical threshold; past it no new blocks [default: 90%].")
@click.option("--credentials-file", type=click.Path(dir_okay=False, path_type=Path), help="S3 credentials (0600).")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, path_type=Path), help="CAs to trust (s3:// pools).")
@click.option("--region", help="The bucket's region (S3).")
@click.option("--create", is_flag=True, help="Make the directory of a file:// pool if it does not exist.")
@json_option
@click.pass_context
def pools_add(
    ctx: click.Context,
    name: str,
    url: str,
    weight: float,
    capacity: str | None,
    warn: str | None,
    critical: str | None,
    credentials_file: Path | None,
    ca_bundle: Path | None,
    region: str | None,
    create: bool,
    as_json: bool,
) -> None:
    """Add pool NAME at URL (file:///DIR, s3://HOST/BUCKET[/PREFIX], s3+http://...).

    An empty pool gets the filesystem's superblock; a pool of another filesystem is
    refused. The blocks whose placement changes are moved in the background."""
    body: dict[str, Any] = {"name": name, "url": url, "weight": weight, "create": create}
    for key, value in (("capacity", capacity), ("warn_threshold", warn), ("critical_threshold", critical),
                       ("region", region)):  # fmt: skip
        if value is not None:
            body[key] = value
    if credentials_file is not None:
        body["credentials_file"] = str(credentials_file.absolute())
    if ca_bundle is not None:
        body["ca_bundle"] = str(ca_bundle.absolute())
    answer = call(ctx, "POST", "/v1/pools", body)
    if as_json:
        emit(answer)
        return
    how = "initialised" if answer["initialised"] else "it held this filesystem's superblock already"
    click.echo(f"pool {name} added ({how}); {answer['queued']} blocks to move to it or away")


@pools.command("set")
@click.argument("name")
@click.option("--weight", type=float, help="Share of the blocks (moves the blocks whose placement changes).")
@click.option("--capacity", metavar="SIZE", help="Bytes the pool may hold, e.g. 500G; 0: none.")
@click.option("--warn", metavar="RATIO", help="Warn threshold, e.g. 0.8 or 80%.")
@click.option("--critical", metavar="RATIO", help="Critical threshold; past it the pool takes no new blocks.")
@json_option
@click.pass_context
def pools_set(
    ctx: click.Context,
    name: str,
    weight: float | None,
    capacity: str | None,
    warn: str | None,
    critical: str | None,
    as_json: bool,
) -> None:
    """Change a pool's weight, capacity or thresholds (kept in repfs.toml)."""
    body = {k: v for k, v in (("weight", weight), ("capacity", capacity), ("warn", warn), ("critical", critical))
            if v is not None}  # fmt: skip
    if not body:
        die("nothing to change: give --weight, --capacity, --warn or --critical", 2)
    answer = call(ctx, "PATCH", f"/v1/pools/{name}", body)
    if as_json:
        emit(answer)
        return
    info = answer["info"]
    click.echo(
        f"pool {name}: weight {info['weight']:g}, capacity {size(info['capacity']) if info['capacity'] else 'none'}, "
        f"warn {pct(info['warn_threshold'])}, critical {pct(info['critical_threshold'])}; "
        f"now {pct(info['usage_ratio'])} used ({info['level']})"
        + (f"; {answer['queued']} blocks to move" if answer["queued"] else "")
    )


def _wait_drain(ctx: click.Context, name: str, timeout: float | None, as_json: bool) -> dict[str, Any]:
    deadline = time.monotonic() + timeout if timeout else None
    info = call(ctx, "GET", f"/v1/pools/{name}")
    with Progress(f"draining {name}", "blocks", stream=io.StringIO() if as_json else None) as bar:
        while True:
            drain = info.get("drain") or {}
            total, remaining = drain.get("total"), drain.get("remaining")
            if total is not None and remaining is not None:
                bar.update(total - remaining, total)
            if drain.get("done"):
                return dict(info)
            if not info.get("draining"):
                die(f"pool {name} is not draining any more", 5)
            if deadline is not None and time.monotonic() > deadline:
                die(f"pool {name} still holds {remaining} blocks after {timeout:g} s; the drain goes on", EXIT_TIMEOUT)
            time.sleep(POLL)
            info = call(ctx, "GET", f"/v1/pools/{name}")


@pools.command("drain")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until the pool holds no blocks, with a progress bar.")
@click.option("--timeout", type=float, help="With --wait: give up waiting after this many seconds (exit 8).")
@json_option
@click.pass_context
def pools_drain(ctx: click.Context, name: str, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Drain pool NAME: copy every block it holds to the other pools, then it is empty.

    It still serves reads meanwhile and takes no new blocks. Remove it afterwards with
    `repfs-admin pools remove NAME`. A restart of the daemon resumes the drain."""
    answer = call(ctx, "POST", f"/v1/pools/{name}/drain")
    if wait:
        info = _wait_drain(ctx, name, timeout, as_json)
        show(info, as_json, lambda _: f"pool {name} is drained: it holds no blocks; "
                                      f"remove it with: repfs-admin pools remove {name}")  # fmt: skip
        return
    show(answer, as_json, lambda a: f"pool {name} is draining: {a['queued']} blocks to move; "
                                    f"follow it with: repfs-admin pools drain {name} --wait")  # fmt: skip


@pools.command("undrain")
@click.argument("name")
@json_option
@click.pass_context
def pools_undrain(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop draining pool NAME: it takes its place in placement again."""
    answer = call(ctx, "POST", f"/v1/pools/{name}/undrain")
    show(answer, as_json, lambda a: f"pool {name} is no longer draining; {a['queued']} blocks to move back")


@pools.command("remove")
@click.argument("name")
@json_option
@click.pass_context
def pools_remove(ctx: click.Context, name: str, as_json: bool) -> None:
    """Remove pool NAME from the filesystem (refused while it holds the only copy of a
    block, or while a block would keep fewer than `replicas` copies without it: drain it
    first). Its objects stay where they are; delete them yourself."""
    answer = call(ctx, "DELETE", f"/v1/pools/{name}")
    show(answer, as_json, lambda _: f"pool {name} removed; its objects are left in place")


@pools.command("offline")
@click.argument("name")
@json_option
@click.pass_context
def pools_offline(ctx: click.Context, name: str, as_json: bool) -> None:
    """Take pool NAME out on purpose (to fix it by hand): no reads, writes or heartbeats go
    to it and it raises no alarm; the next pools stand in and what it misses is repaired
    once it is back. A failed pool may be taken offline too."""
    answer = call(ctx, "POST", f"/v1/pools/{name}/offline")
    show(answer, as_json, lambda a: f"pool {name} is {a['state']}: put it back with repfs-admin pools online {name}")


@pools.command("online")
@click.argument("name")
@json_option
@click.pass_context
def pools_online(ctx: click.Context, name: str, as_json: bool) -> None:
    """Put offline pool NAME back: it is challenged (verifying) before it is used again; a
    failed challenge, or one it stops answering during, fails it."""
    answer = call(ctx, "POST", f"/v1/pools/{name}/online")
    show(answer, as_json, lambda a: f"pool {name} is {a['state']}: being challenged")


@pools.command("clear")
@click.argument("name")
@json_option
@click.pass_context
def pools_clear(ctx: click.Context, name: str, as_json: bool) -> None:
    """Accept a `failed` pool as it is: it is used again at once, its superblock written if
    it is missing, and every block it should hold and lacks is copied back in the background
    (follow it with repfs-admin repair status). To have it challenged again instead, take it
    offline and put it back online."""
    answer = call(ctx, "POST", f"/v1/pools/{name}/clear")
    show(answer, as_json, lambda a: f"pool {name} is {a['state']}; {a['queued']} blocks to check and copy back")


@main.command()
@click.option("--restart", is_flag=True, help="Start from the first block, not where the last scrub stopped.")
@click.option(
    "--rate",
    default=DEFAULT_SCRUB_RATE,
    show_default=True,
    metavar="SIZE",
    help="Read at most this many bytes a second (and write as much for repairs); 0: no limit.",
)
@click.option("--detach", is_flag=True, help="Start it and return at once.")
@click.option("--status", "show_status", is_flag=True, help="Show the progress of the running (or last) scrub.")
@click.option("--cancel", is_flag=True, help="Cancel the running scrub (the next one resumes where it stopped).")
@json_option
@click.pass_context
def scrub(
    ctx: click.Context, restart: bool, rate: str, detach: bool, show_status: bool, cancel: bool, as_json: bool
) -> None:
    """Scrub the mounted filesystem: read every copy of every block, check its digest,
    repair what is bad. Waits with a progress bar unless --detach. Exit 0 all good,
    1 blocks left incomplete (a pool not up), 6 blocks with no good copy."""
    if cancel:
        answer = call(ctx, "DELETE", "/v1/scrub")
        emit(answer) if as_json else click.echo("scrub cancelled")
        return
    if show_status:
        info = call(ctx, "GET", "/v1/scrub")
        if as_json:
            emit(info)
        else:
            click.echo(fields(info, skip=("report",), sizes=frozenset()))  # done/total count blocks
            if info["report"]:
                click.echo(f"last: {info['report']['summary']}")
        return
    body: dict[str, Any] = {"restart": restart, "rate": rate}
    info = call(ctx, "POST", "/v1/scrub", body)
    if detach:
        emit(info) if as_json else click.echo("scrub started; follow it with: repfs-admin scrub --status")
        return
    with Progress("scrub", "blocks", stream=io.StringIO() if as_json else None) as bar:
        while True:
            info = call(ctx, "GET", "/v1/scrub")
            bar.update(info["done"], info["total"])
            if not info["running"]:
                break
            time.sleep(POLL)
    report = info["report"]
    if as_json:
        emit(info)
    elif report:
        click.echo(("resumed: " if report["resumed"] else "") + report["summary"])
    if info["error"] or report is None:
        die(f"scrub stopped: {info['error']}", 1)
    if report["unrecoverable"]:
        sys.exit(EXIT_UNRECOVERABLE)
    if report["incomplete"]:
        sys.exit(1)


@main.command()
@click.argument("path")
@click.option("--deep", is_flag=True, help="Read every copy and check it by digest (else: ask whether it is there).")
@json_option
@click.pass_context
def check(ctx: click.Context, path: str, deep: bool, as_json: bool) -> None:
    """Where each block of a file (or of every file under a folder) has its copies, and
    whether they are there (or, with --deep, good). Missing or damaged copies are queued
    for repair. Exit 0 when every block has all its copies good, 1 otherwise."""
    answer = call(ctx, "POST", "/v1/check", {"path": in_mount(path), "deep": deep})
    problems = 0
    lines = []
    for f in answer["files"]:
        lines.append(f"{f['path']}  ({size(f['size'])}, {len(f['blocks'])} blocks)")
        for b in f["blocks"]:
            copies = "  ".join(f"{pool}:{state}" for pool, state in b["copies"].items())
            good = sum(1 for state in b["copies"].values() if state == "ok")
            if good != len(b["copies"]):
                problems += 1
            lines.append(f"  block {b['index']:>6} {b['block']}  {copies}")
    if answer["truncated"]:
        lines.append("(cut off: too many files; check a smaller folder)")
    lines.append(f"{problems} blocks with a copy missing or bad; {answer['queued_for_repair']} queued for repair")
    show(answer, as_json, lambda _: "\n".join(lines))
    if problems:
        sys.exit(1)


@main.group("config")
def config_group() -> None:
    """Settings of the mounted filesystem (kept in repfs.toml)."""


@config_group.command("set")
@click.argument("setting", type=click.Choice(["replicas", "write-quorum"]))
@click.argument("value", type=click.IntRange(1, 64))
@json_option
@click.pass_context
def config_set(ctx: click.Context, setting: str, value: int, as_json: bool) -> None:
    """Set the number of copies of every block (replicas) or of copies a write needs before
    it succeeds (write-quorum). Copies to add or remove are made in the background: follow
    them with repfs-admin repair status."""
    answer = call(ctx, "PATCH", "/v1/config", {setting.replace("-", "_"): value})
    show(answer, as_json, lambda a: f"replicas {a['replicas']}, write quorum {a['write_quorum']}; "
                                    f"{a['queued']} blocks queued for copies to add or remove")  # fmt: skip


@main.group()
def keys() -> None:
    """The secret that unlocks the filesystem."""


@keys.command("passwd")
@secret_options
@new_secret_options
@json_option
@click.pass_context
def keys_passwd(
    ctx: click.Context,
    passphrase_fd: int | None,
    key_file: Path | None,
    new_passphrase_fd: int | None,
    new_key_file: Path | None,
    as_json: bool,
) -> None:
    """Change the passphrase or key file of the mounted filesystem. Only the data key is
    wrapped again (on every pool); no data is rewritten and the mount goes on."""
    try:
        old = get_secret(passphrase_fd, key_file, confirm=False, what="Current passphrase")
        new = get_secret(new_passphrase_fd, new_key_file, confirm=True, what="New passphrase")
    except RepfsError as exc:
        die(str(exc), 2)
    answer = call(ctx, "POST", "/v1/keys/passwd", {"old_secret": old.hex(), "new_secret": new.hex()})
    if as_json:
        emit(answer)
    elif answer["stale_pools"]:
        click.echo(
            "the new secret is set; these pools still hold the old superblock: " + "; ".join(answer["stale_pools"])
        )
    else:
        click.echo(f"the new secret unlocks filesystem {answer['fs_uuid']} on every pool")
    if answer["stale_pools"]:
        sys.exit(1)


@main.group()
def repair() -> None:
    """The background repair: blocks short of copies or to be moved."""


@repair.command("status")
@json_option
@click.pass_context
def repair_status(ctx: click.Context, as_json: bool) -> None:
    """Blocks to repair or move, copies written and removed, drains and rebalances."""
    info = call(ctx, "GET", "/v1/repair")
    if as_json:
        emit(info)
        return
    rate = info["rate_limit"]
    rows = [
        ["blocks to repair or move", info["deficit"]],
        ["copies written", info["repaired"]],
        ["copies removed", info["removed"]],
        ["unrecoverable blocks", info["unrecoverable"]],
        ["read repairs", info["read_repairs"]],
        ["rate limit", f"{size(rate)}/s" if rate else "none"],
        ["queued by pool changes", info["rebalance"]["queued_total"]],
    ]
    click.echo(table(rows, ["", ""]).split("\n", 1)[1])
    for job in info["rebalance"]["recent"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["started"]))
        click.echo(f"  {when}  {job['reason']}: {job['queued']} blocks queued")
    for name, d in info["drains"].items():
        state = "drained" if d["done"] else f"{d['remaining']} of {d['total']} blocks left"
        click.echo(f"  draining {name}: {state}")


main.add_command(users)
main.add_command(mail)
main.add_command(history)
main.add_command(retention)
main.add_command(info)
main.add_command(locks)
main.add_command(shares)
main.add_command(hold)


if __name__ == "__main__":
    main()
