"""`repfs-admin retention ...` (rules, the sweeper) and `repfs-admin info PATH`."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import click

from repfs.admin.cliutil import call, call_user, die, fields, in_mount, is_admin, json_option, show, table, when
from repfs.config import format_age, parse_age


def _age(text: str | None, option: str) -> int:
    if text is None:
        return 0
    try:
        return parse_age(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _target(path: str | None, default: bool) -> dict[str, Any]:
    if default == (path is not None):
        die("give a folder (PATH; / for the whole filesystem) or --default (for new namespaces), one of them", 2)
    return {"default": True} if default else {"path": in_mount(path or "")}


def _ages(rule: dict[str, Any]) -> tuple[str, str]:
    return (
        format_age(rule["max_age"]) if rule["max_age"] else "-",
        format_age(rule["min_age"]) if rule["min_age"] else "-",
    )


def _rule(rule: dict[str, Any]) -> str:
    where = rule["path"] or "new namespaces (default)"
    most, least = _ages(rule)
    return f"{where}: files deleted past {most} since ingest, kept from eviction for {least}"


def _status(st: dict[str, Any]) -> str:
    rows = [[r["path"], *_ages(r), r["by"], when(r["since"])] for r in st["rules"]]
    if st["default"] is not None:
        d = st["default"]
        rows.append(["(new namespaces)", *_ages(d), d["by"], when(d["since"])])
    out = [table(rows, ["FOLDER", "MAX AGE", "MIN AGE", "BY", "SINCE"]) if rows else "no retention rules"]
    if st["running"]:
        out.append("a sweep is running")
    elif st["next_run"] is not None:
        out.append(f"next sweep: {when(st['next_run'])} (every {format_age(int(st['interval']))})")
    if st["last_finished"]:
        out.append(f"last sweep: {when(st['last_finished'])}, {st['last_removed']} files deleted, "
                   f"{st['last_skipped']} left (on hold or in use)")  # fmt: skip
    return "\n".join(out)


def _dry(answer: dict[str, Any]) -> str:
    out = [f"a sweep now would delete {answer['would_delete']} files"]
    out += [f"  {p}" for p in answer["paths"]]
    if answer["would_delete"] > len(answer["paths"]):
        out.append(f"  ... and more ({answer['would_delete'] - len(answer['paths'])} not listed)")
    if answer["held"]:
        out.append(f"{answer['held']} more are past their age but on legal hold: kept")
    return "\n".join(out)


@click.group()
def retention() -> None:
    """Retention: files older than a folder's maximum age (since repfs took them in, not
    their mtime) are deleted by a background sweeper; files younger than its minimum
    age are never evicted. A rule on / is a filesystem-wide maximum."""


@retention.command("set")
@click.argument("path", required=False)
@click.option("--default", "default", is_flag=True, help="The rule each new namespace gets (not the existing ones).")
@click.option("--max-age", metavar="AGE", help="Delete files ingested longer ago (e.g. 30d, 12h, 2w).")
@click.option("--min-age", metavar="AGE", help="Never evict files ingested more recently.")
@json_option
@click.pass_context
def retention_set(
    ctx: click.Context, path: str | None, default: bool, max_age: str | None, min_age: str | None, as_json: bool
) -> None:
    """Set the retention rule of folder PATH (/ for the whole filesystem)."""
    if max_age is None and min_age is None:
        die("give --max-age, --min-age or both", 2)
    body = {**_target(path, default), "max_age": _age(max_age, "--max-age"), "min_age": _age(min_age, "--min-age")}
    show(call(ctx, "POST", "/v1/retention", body), as_json, _rule)


@retention.command("clear")
@click.argument("path", required=False)
@click.option("--default", "default", is_flag=True, help="The rule new namespaces get.")
@json_option
@click.pass_context
def retention_clear(ctx: click.Context, path: str | None, default: bool, as_json: bool) -> None:
    """Remove the retention rule of folder PATH."""
    answer = call(ctx, "POST", "/v1/retention/clear", _target(path, default))
    show(answer, as_json, lambda a: f"the retention rule on {a['path'] or 'new namespaces'} is removed")


@retention.command("status")
@click.option("--dry-run", is_flag=True, help="Also list what a sweep now would delete (nothing is deleted).")
@json_option
@click.pass_context
def retention_status(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """The rules, when the sweeper runs next, and what its last sweep did."""
    st = call(ctx, "GET", "/v1/retention")
    if not dry_run:
        show(st, as_json, _status)
        return
    answer = call(ctx, "POST", "/v1/retention/run", {"dry_run": True})
    show({**st, "dry_run": answer}, as_json, lambda a: _status(a) + "\n" + _dry(a["dry_run"]))


@retention.command("run")
@json_option
@click.pass_context
def retention_run(ctx: click.Context, as_json: bool) -> None:
    """Start a sweep now (it deletes what is past its age; see status --dry-run first)."""
    show(call(ctx, "POST", "/v1/retention/run", {}), as_json, lambda _: "a retention sweep is starting")


def _info(a: dict[str, Any]) -> str:
    shown = {k: v for k, v in a.items() if k not in {"names", "mtime", "ctime", "ingested", "expires", "held"}}
    shown["names"] = ", ".join(a["names"])
    shown["ingested"] = _stamp(a["ingested"])
    shown["mtime"], shown["ctime"] = _stamp(a["mtime"]), _stamp(a["ctime"])
    shown["held"] = "no" if a["held"] is None else f"yes ({a['held'] or 'no reason given'})"
    shown["max_age"] = format_age(a["max_age"]) if a["max_age"] else "-"
    shown["min_age"] = format_age(a["min_age"]) if a["min_age"] else "-"
    shown["expires"] = _stamp(a["expires"]) if a["expires"] else "never"
    shown["shared_with"] = ", ".join(f"{k} ({v})" for k, v in a["shared_with"].items()) or "-"
    return fields(shown, sizes=frozenset({"size"}))


def _stamp(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@click.command("info")
@click.argument("path")
@json_option
@click.pass_context
def info(ctx: click.Context, path: str, as_json: bool) -> None:
    """What repfs knows of PATH: attributes, ingest time (when repfs took it in; not
    changed by touch, rsync -a or cp -p), hold, retention, lock and shares. Not an
    administrator: of what your account may reach."""
    where = _quoted(in_mount(path))
    if is_admin(ctx):
        answer = call(ctx, "GET", f"/v1/info?path={where}")
    else:
        answer = call_user(ctx, "GET", f"/v1/me/info?path={where}")
    show(answer, as_json, _info)


def _quoted(path: str) -> str:
    return quote(path, safe="/")
