"""What the user install puts on the host, checked with the tools a user runs: man(1) on
the man pages, bash with the bash-completion package on the completion scripts, the
links to both commands; and the README's set-up commands, which must work as root on a
Debian that has no sudo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from repfs.admin.cli import main as admin_main
from repfs.cli import main as repfs_main
from tests.admin.conftest import ROOT, VENV

pytestmark = pytest.mark.timeout(180)

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def commands() -> list[tuple[str, click.Command]]:
    """(page name, command) for every command of `repfs` and `repfs-admin`."""
    found: list[tuple[str, click.Command]] = []

    def walk(cmd: click.Command, path: str) -> None:
        found.append((path, cmd))
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path}-{name}")

    walk(repfs_main, "repfs")
    walk(admin_main, "repfs-admin")
    return found


def man(prefix: Path, page: str) -> subprocess.CompletedProcess[str]:
    """`man PAGE` as a user reads it, in a UTF-8 locale, on a wide terminal."""
    env = {**os.environ, "MANPATH": str(prefix / "share" / "man"), "LC_ALL": "C.UTF-8", "MANWIDTH": "200"}
    env.pop("MANPAGER", None)
    return subprocess.run(["man", "--warnings", "--pager=cat", page], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip


def test_install_files_links_both_commands_and_is_safe_to_run_again(installed: Path, tmp_path: Path) -> None:
    for cmd in ("repfs", "repfs-admin"):
        link = installed / "bin" / cmd
        assert link.is_symlink() and Path(os.readlink(link)) == VENV / "bin" / cmd
        res = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and cmd in res.stdout, res.stdout + res.stderr
    # the mount(8) helper, beside the commands and where mount(8) looks (/sbin)
    for link in (installed / "bin" / "mount.fuse.repfs", installed / "sbin" / "mount.fuse.repfs"):
        assert Path(os.readlink(link)) == VENV / "bin" / "mount.fuse.repfs"
        res = subprocess.run([str(link), "/srv/fs", "/mnt/x", "-f", "-o", "key_file=/k,noauto"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert res.returncode == 0 and "would run: repfs mount /srv/fs /mnt/x --key-file /k" in res.stderr, res.stderr
    # the user install is what runs it (the dev install puts nothing in /usr/local)
    install = (ROOT / "scripts" / "install.sh").read_text()
    user_branch = install[install.index('if [[ "$MODE" == dev ]]; then\n    say "pip') :]
    assert 'bash "$REPO/scripts/install-files.sh"' in user_branch.split("\nfi\n")[0]
    # again, over a file of someone else's: that file is left alone and said so
    prefix = tmp_path / "again"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "repfs-admin").write_text("#!/bin/sh\necho mine\n")
    env = {**os.environ, "REPFS_PREFIX": str(prefix), "REPFS_SBIN": str(prefix / "sbin"), "REPFS_VENV": str(VENV)}
    script = str(ROOT / "scripts" / "install-files.sh")
    for _ in range(2):
        res = subprocess.run(["bash", script], capture_output=True, text=True, timeout=120, env=env,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
    assert "linked" not in res.stdout  # the second run found its links in place
    assert f"{prefix}/bin/repfs-admin exists and is not a link; left alone" in res.stderr
    assert (prefix / "bin" / "repfs-admin").read_text() == "#!/bin/sh\necho mine\n"
    assert Path(os.readlink(prefix / "bin" / "repfs")) == VENV / "bin" / "repfs"
    # a stale page of a command that is gone is removed
    stale = prefix / "share" / "man" / "man1" / "repfs-frobnicate.1"
    stale.write_text(".TH x 1\n")
    assert subprocess.run(["bash", script], capture_output=True, timeout=120, env=env).returncode == 0
    assert not stale.exists()


def test_every_command_has_a_man_page_that_names_its_options(installed: Path) -> None:
    assert shutil.which("man"), "man is missing: scripts/install.sh installs it (Debian package man-db)"
    cmds = commands()
    pages = {p.name for p in (installed / "share" / "man" / "man1").iterdir()}
    assert pages == {f"{name}.1" for name, _ in cmds}
    for name, cmd in cmds:
        res = man(installed, name)
        assert res.returncode == 0 and not res.stderr, f"man {name}: {res.stderr}"
        text = res.stdout
        assert re.search(rf"^NAME\n\s+{re.escape(name)} - \S", text, re.M), text
        assert cmd.get_short_help_str(300) in " ".join(text.split())
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in [*param.opts, *param.secondary_opts]:
                    # as ASCII: a hyphen typeset as U+2010 could not be pasted back as an option
                    assert re.search(rf"(^|[\s,\[]){re.escape(opt)}\b", text, re.M), f"man {name}: no {opt}"
        if isinstance(cmd, click.Group):
            for sub in cmd.commands:
                assert f"{name}-{sub}(1)" in text, f"man {name} does not point to {name}-{sub}(1)"
        assert "\u2010" not in text, f"man {name} has a typeset hyphen"
    # the check reads the pages: a page that lost an option is found out
    assert "--cache-size" in man(installed, "repfs-mount").stdout
    assert man(installed, "repfs-no-such-command").returncode != 0


def complete(prefix: Path | None, *words: str) -> list[str]:
    """What TAB offers after `words` in bash with the bash-completion package, which loads a
    command's completion from XDG_DATA_DIRS/bash-completion/completions at its first TAB."""
    script = r"""
source "$BASH_COMPLETION" || exit 9
__load_completion "$1" || { echo "no completion for $1" >&2; exit 3; }
spec="$(complete -p "$1")"; func="${spec##*-F }"; func="${func%% *}"
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
"$func" "$1" "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
    env = {
        "PATH": f"{prefix / 'bin' if prefix else VENV / 'bin'}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "XDG_DATA_DIRS": str(prefix / "share") if prefix else "/nonexistent",
        "BASH_COMPLETION": str(BASH_COMPLETION),
    }
    res = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True, timeout=60,
                         env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return [w for w in res.stdout.split("\n") if w]


def test_bash_completion_completes_a_partial_word(installed: Path) -> None:
    assert BASH_COMPLETION.is_file(), "scripts/install.sh installs the Debian package bash-completion"
    assert complete(installed, "repfs", "mo") == ["mount"]
    assert complete(installed, "repfs", "mount", "--cache-") == ["--cache-dir", "--cache-size"]
    assert complete(installed, "repfs-admin", "pools", "dr") == ["drain"]
    assert complete(installed, "repfs-admin", "--ti") == ["--timeout"]
    assert set(complete(installed, "repfs-admin", "")) >= {"status", "pools", "scrub", "repair"}
    # without the installed scripts bash offers no such thing: the answers above come from them
    with pytest.raises(AssertionError, match="no completion for repfs"):
        complete(None, "repfs", "mo")


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```(?:sh|bash|console)?\n(.*?)^```", markdown, re.M | re.S)


def test_readme_set_up_commands_work_as_root_without_sudo() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = shell_blocks(readme)
    assert any("bash scripts/quickstart.sh" in b for b in blocks)
    for block in blocks:
        for line in block.splitlines():
            assert not re.match(r"\s*sudo\b", line), f"README command needs sudo: {line}"
    setup = readme[readme.index("## Set up") : readme.index("## Using the mount")]
    assert "sudo bash scripts/quickstart.sh" in setup.replace("`", "")  # said in the text: how, when not root
    for doc in (ROOT / "docs").glob("*.md"):
        for block in shell_blocks(doc.read_text()):
            assert not re.search(r"^\s*sudo\b", block, re.M), f"{doc.name} has a command that needs sudo"
    usage = (ROOT / "scripts" / "quickstart.sh").read_text().split("set -euo")[0]
    assert "#   bash scripts/quickstart.sh" in usage


def test_the_test_scripts_header_gives_the_defaults_the_code_uses() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    header = script.split("set -euo")[0]
    for var in ("REPFS_TEST_TIMEOUT", "REPFS_SUITE_TIMEOUT"):
        said = re.search(rf"^#\s+{var}\s.*\[default: (\d+)\]$", header, re.M)
        used = set(re.findall(rf"\$\{{{var}:-(\d+)\}}", script))
        assert said and used == {said[1]}, f"{var}: header says {said[1] if said else None}, code uses {used}"
