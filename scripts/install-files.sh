#!/usr/bin/env bash
# Put repfs's commands, man pages, bash completion and documents where a shell, man(1)
# and systemd find them. The last step of the user install (scripts/install.sh); safe to
# run alone and to run again.
#
#   bash scripts/install-files.sh
#
# What it puts under PREFIX (each from the virtualenv's repfs, never written by hand):
#   bin/repfs, bin/repfs-admin, bin/mount.fuse.repfs links to the virtualenv's commands
#   /sbin/mount.fuse.repfs (REPFS_SBIN)              the same link where mount(8) looks for it
#   share/man/man1/repfs.1, repfs-*.1                one man page per command: man repfs-mount
#   share/bash-completion/completions/repfs,         bash completion, loaded by the bash-completion
#     share/bash-completion/completions/repfs-admin  package at the first TAB (a new shell)
#   share/doc/repfs/README.md, *.md                  the documents (the systemd unit's Documentation=)
#
# Environment:
#   REPFS_VENV    the virtualenv with repfs installed   [default: <repo>/.venv]
#   REPFS_PREFIX  where the files go                    [default: /usr/local]
#   REPFS_SBIN    where mount(8) finds mount helpers    [default: /sbin]
set -euo pipefail

case "${1:-}" in
    "") ;;
    -h | --help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install-files.sh: unknown argument '$1' (it takes none)" >&2
        exit 2
        ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPFS_VENV:-$REPO/.venv}"
PREFIX="${REPFS_PREFIX:-/usr/local}"
SBIN="${REPFS_SBIN:-/sbin}"
COMMANDS=(repfs repfs-admin)            # the click commands: man pages and completion
LINKS=(repfs repfs-admin mount.fuse.repfs)
MANDIR="$PREFIX/share/man/man1"
COMPDIR="$PREFIX/share/bash-completion/completions"
DOCDIR="$PREFIX/share/doc/repfs"

say() { printf '==> %s\n' "$*"; }
note() { printf 'install-files.sh: note: %s\n' "$*" >&2; }

for cmd in "${LINKS[@]}"; do
    [[ -x "$VENV/bin/$cmd" ]] || {
        echo "install-files.sh: error: $VENV/bin/$cmd is missing; run scripts/install.sh first" >&2
        exit 1
    }
done

# Write as root where we may not write ourselves (sudo), or say what was left out.
SUDO=()
if [[ $EUID -ne 0 ]]; then
    probe="$PREFIX"
    while [[ ! -e "$probe" ]]; do probe="$(dirname "$probe")"; done
    if [[ ! -w "$probe" ]]; then
        # sudo only if it can run: without a password, or with a terminal to ask for one
        if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || { : </dev/tty; } 2>/dev/null; }; then
            SUDO=(sudo)
        else
            note "cannot write to $PREFIX (not root, and no usable sudo): no links, man pages or completion;"
            note "use $VENV/bin/repfs, or run this script as root, or set REPFS_PREFIX to a folder of yours"
            exit 0
        fi
    fi
fi
as_root() { "${SUDO[@]}" "$@"; }

# --- the commands on PATH, and the mount(8) helper -------------------------------------------
link_to() { # LINK TARGET: make LINK point to TARGET, unless LINK is a file of someone else's
    local link="$1" target="$2"
    if [[ -e "$link" && ! -L "$link" ]]; then
        note "$link exists and is not a link; left alone (use $target)"
    elif [[ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]]; then
        as_root mkdir -p "$(dirname "$link")"
        as_root ln -sfn "$target" "$link"
        say "linked $link -> $target"
    fi
}
for cmd in "${LINKS[@]}"; do
    link_to "$PREFIX/bin/$cmd" "$VENV/bin/$cmd"
done
if [[ $EUID -eq 0 || ${#SUDO[@]} -gt 0 || -w "$SBIN" ]]; then
    link_to "$SBIN/mount.fuse.repfs" "$VENV/bin/mount.fuse.repfs"
else
    note "cannot write to $SBIN: mount -t fuse.repfs needs $SBIN/mount.fuse.repfs (a link to $VENV/bin/mount.fuse.repfs)"
fi

# --- man pages -------------------------------------------------------------------------------
as_root "$VENV/bin/python" -m repfs.manpages "$MANDIR" | sed 's/^/==> /'
if command -v mandb >/dev/null 2>&1; then
    # the index behind apropos/whatis; `man repfs-mount` finds the page without it
    as_root mandb -q "$PREFIX/share/man" >/dev/null 2>&1 || true
fi

# --- bash completion (click writes the script) -----------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
as_root mkdir -p "$COMPDIR"
for cmd in "${COMMANDS[@]}"; do
    var="_$(printf '%s' "$cmd" | tr '[:lower:]-' '[:upper:]_')_COMPLETE"
    env "$var=bash_source" "$VENV/bin/$cmd" >"$tmp/$cmd"
    grep -q "complete .*$cmd\$" "$tmp/$cmd" || {
        echo "install-files.sh: error: $cmd wrote no bash completion script" >&2
        exit 1
    }
    as_root install -m 0644 "$tmp/$cmd" "$COMPDIR/$cmd"
done
say "bash completion for ${COMMANDS[*]} in $COMPDIR (a new shell completes them)"

# --- documents ------------------------------------------------------------------------------
as_root mkdir -p "$DOCDIR"
as_root install -m 0644 "$REPO/README.md" "$REPO"/docs/*.md "$DOCDIR/"
say "documents in $DOCDIR"
