"""Man pages for `repfs` and `repfs-admin`: one page per command, from the click definitions.

    python -m repfs.manpages DIR     writes DIR/repfs.1, DIR/repfs-mount.1, DIR/repfs-admin-pools-add.1, ...

scripts/install-files.sh runs it at install time into PREFIX/share/man/man1, so that
`man repfs-mount` says what `repfs mount --help` says: the pages are made from the same
click commands, never written by hand. Each page has NAME (the first sentence of the
help), SYNOPSIS, DESCRIPTION (the whole help), OPTIONS (every option with its help,
default and range, as --help shows them), COMMANDS for a group, and SEE ALSO. Text is
escaped for roff: a bare `-` is typeset as a hyphen, which cannot be pasted back as an
option. Pages of commands that no longer exist are removed, so running it again leaves
exactly the current set. SOURCE_DATE_EPOCH, when set, fixes the date on the pages.
"""

from __future__ import annotations

import datetime
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from repfs import __version__

NAME_LIMIT = 300  # characters of the NAME line: the first sentence, whole


@dataclass(frozen=True)
class Page:
    name: str  # the page's name, e.g. "repfs-admin-pools-add"
    command_path: str  # what a user types, e.g. "repfs-admin pools add"
    text: str  # roff


def roff_text(text: str) -> str:
    """Plain text as roff: backslashes and dashes escaped, no line read as a request."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").split("\n"):
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _paragraphs(help_text: str) -> list[str]:
    """A command's help as roff paragraphs; a click `\\b` paragraph is kept unfilled."""
    out = []
    for para in inspect.cleandoc(help_text.split("\f", 1)[0]).split("\n\n"):
        if para.startswith("\b"):
            out.append(".nf\n" + roff_text(para.removeprefix("\b").strip("\n")) + "\n.fi")
        elif para.strip():
            out.append(roff_text(para))
    return out


def _option_tag(opts: str) -> str:
    """`-f, --foreground` or `--cache-dir DIRECTORY` with the names bold and the value italic."""
    parts = []
    for piece in opts.split(", "):
        name, _, value = piece.partition(" ")
        parts.append(f"\\fB{roff_text(name)}\\fR" + (f" \\fI{roff_text(value)}\\fR" if value else ""))
    return ", ".join(parts)


def _commands(cmd: click.Command) -> dict[str, click.Command]:
    if not isinstance(cmd, click.Group):
        return {}
    return {name: sub for name, sub in cmd.commands.items() if not sub.hidden}


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%d")


def _page(ctx: click.Context, see_also: list[str], date: str) -> Page:
    cmd = ctx.command
    name = ctx.command_path.replace(" ", "-")
    out = [
        f'.TH "{name.upper()}" "1" "{date}" "repfs {__version__}" "repfs Manual"',
        ".nh",  # no hyphenation: option and page names must stay whole
        ".ad l",
        ".SH NAME",
        f"{roff_text(name)} \\- {roff_text(cmd.get_short_help_str(NAME_LIMIT))}",
        ".SH SYNOPSIS",
        f".B {roff_text(ctx.command_path)}",
        roff_text(" ".join(cmd.collect_usage_pieces(ctx))),
    ]
    paragraphs = _paragraphs(cmd.help or "")
    if paragraphs:
        out += [".SH DESCRIPTION", "\n.PP\n".join(paragraphs)]
    records = [p.get_help_record(ctx) for p in cmd.get_params(ctx) if isinstance(p, click.Option)]
    options = [r for r in records if r is not None]
    if options:
        out.append(".SH OPTIONS")
        for opts, help_text in options:
            out += [".TP", _option_tag(opts), roff_text(help_text)]
    subs = _commands(cmd)
    if subs:
        out.append(".SH COMMANDS")
        for sub_name, sub in subs.items():
            out += [".TP", f"\\fB{roff_text(sub_name)}\\fR", roff_text(sub.get_short_help_str(NAME_LIMIT))]
            out.append(f"See \\fB{roff_text(name + '-' + sub_name)}\\fR(1).")
    if see_also:
        out += [".SH SEE ALSO", ",\n".join(f"\\fB{roff_text(p)}\\fR(1)" for p in see_also)]
    return Page(name, ctx.command_path, "\n".join(out) + "\n")


def pages(root: click.Command, prog: str, others: tuple[str, ...] = ()) -> list[Page]:
    """One page for `root` (invoked as `prog`) and one for every command below it."""
    found: list[Page] = []
    date = _date()

    def walk(cmd: click.Command, info_name: str, parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=info_name, parent=parent)
        subs = _commands(cmd)
        name = ctx.command_path.replace(" ", "-")
        see_also = [parent.command_path.replace(" ", "-")] if parent else list(others)
        see_also += [f"{name}-{sub}" for sub in subs]
        found.append(_page(ctx, see_also, date))
        for sub_name, sub in subs.items():
            walk(sub, sub_name, ctx)

    walk(root, prog, None)
    return found


def all_pages() -> list[Page]:
    """The pages of both commands, as pyproject.toml's [project.scripts] installs them."""
    from repfs.admin.cli import main as admin_main
    from repfs.cli import main as repfs_main

    return [
        *pages(repfs_main, "repfs", others=("repfs-admin",)),
        *pages(admin_main, "repfs-admin", others=("repfs",)),
    ]


def write_pages(target: Path) -> list[Path]:
    """Write every page into `target` (made if missing); remove pages of commands that are gone."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for page in all_pages():
        path = target / f"{page.name}.1"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(page.text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(path)
    for old in {*target.glob("repfs.1"), *target.glob("repfs-*.1")} - set(written):
        old.unlink()
    return written


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
def main(target: Path) -> None:
    """Write the man pages of repfs and repfs-admin (section 1) into TARGET."""
    try:
        written = write_pages(target)
    except OSError as exc:
        click.echo(f"repfs.manpages: error: cannot write the man pages into {target}: {exc.strerror}", err=True)
        sys.exit(1)
    click.echo(f"wrote {len(written)} man pages into {target}")


if __name__ == "__main__":
    main()
