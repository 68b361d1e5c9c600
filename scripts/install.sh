#!/usr/bin/env bash
# Install repfs and everything it needs on Debian 12 (or another apt-based system).
#
#   bash scripts/install.sh          the user install: system packages, a virtualenv, repfs,
#                                    then scripts/install-files.sh: /usr/local/bin/repfs and
#                                    repfs-admin linked to the virtualenv's, a man page per
#                                    command (man repfs-mount), bash completion, the documents
#   bash scripts/install.sh --dev    the developer install: the same packages and virtualenv
#                                    with `pip install -e .[dev]` (pytest, hypothesis, ruff,
#                                    mypy), promtool and systemd-analyze (to check contrib/),
#                                    and nothing in /usr/local (run install-files.sh for that)
#
# Run it as root (no sudo needed), or as a user with sudo, which is then used for apt-get
# and /usr/local.
#
# Safe to run again: packages already installed are not installed again, an existing
# virtualenv is reused.
#
# Environment:
#   REPFS_VENV        where the virtualenv lives            [default: <repo>/.venv]
#   REPFS_PYTHON      the Python to build it with (>= 3.11) [default: python3 on PATH]
#   REPFS_APT_UPDATE  1 = always run apt-get update/install, even when every package is there
#   REPFS_PREFIX      where the user install puts links, man pages, completion [default: /usr/local]
set -euo pipefail

MODE=user
for arg in "$@"; do
    case "$arg" in
        --dev | dev) MODE=dev ;;
        --user | user) MODE=user ;;
        -h | --help)
            sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install.sh: unknown argument '$arg' (use --dev or --user)" >&2
            exit 2
            ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPFS_VENV:-$REPO/.venv}"
PYTHON="${REPFS_PYTHON:-python3}"
# man-db and bash-completion read the man pages and completion scripts install-files.sh writes.
APT_PACKAGES=(python3 python3-venv python3-dev gcc pkg-config fuse3 libfuse3-dev rsync attr acl tar curl ca-certificates
    man-db bash-completion)
# The tests also check contrib/: the alert rules with promtool (package prometheus) and the
# systemd unit with systemd-analyze (package systemd; setpriv, which applies the unit's
# privileges to a real mount, is in util-linux, always installed). They run S3 pools on
# Ceph RGW too, a single-node cluster started by tests/ceph.py (ceph-mon, ceph-osd,
# radosgw; the ceph and monmaptool commands are in ceph-common and ceph-base). The sshd
# recipe of contrib/sshd is tested with OpenSSH's server on a loopback port. The web
# interface is tested in Debian's headless Chromium, driven through chromium-driver.
if [[ "$MODE" == dev ]]; then
    APT_PACKAGES+=(prometheus systemd ceph-mon ceph-osd radosgw ceph-common openssh-server openssh-client chromium chromium-driver)
fi

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- privileges --------------------------------------------------------------------------
SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        NEED_ROOT=1
    fi
fi
as_root() {
    if [[ -n "${NEED_ROOT:-}" ]]; then
        die "'$*' needs root: run this script as root, or install sudo"
    fi
    "${SUDO[@]}" "$@"
}

# --- system packages ---------------------------------------------------------------------
if ! command -v apt-get >/dev/null 2>&1; then
    die "apt-get not found: this script supports Debian 12 / Ubuntu. On another system install
  Python >= 3.11 with venv and headers, a C compiler, pkg-config, FUSE 3 (fusermount3) with its
  development files (libfuse3), rsync, attr, curl and CA certificates, then run this script again
  with those in place, or: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 || "${REPFS_APT_UPDATE:-0}" == 1 ]]; then
    say "installing system packages: ${missing[*]:-${APT_PACKAGES[*]}}"
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${APT_PACKAGES[@]}"
else
    say "system packages: all installed (${APT_PACKAGES[*]})"
fi

if [[ ! -e /dev/fuse ]]; then
    as_root modprobe fuse 2>/dev/null || true
fi
if [[ ! -e /dev/fuse ]]; then
    echo "install.sh: warning: /dev/fuse is missing, so nothing can be mounted here." >&2
    echo "  On a VM: modprobe fuse. In a container: start it with --device /dev/fuse --cap-add SYS_ADMIN." >&2
fi

# --- Python and the virtualenv -----------------------------------------------------------
version_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    die "'$PYTHON' not found on PATH; install python3 (>= 3.11) or set REPFS_PYTHON=/path/to/python3.11"
fi
if ! version_ok "$PYTHON"; then
    found="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo unknown)"
    die "repfs needs Python >= 3.11, but $(command -v "$PYTHON") is $found.
  Install a newer Python (Debian 12 ships 3.11) or set REPFS_PYTHON=/path/to/python3.11"
fi

if [[ -x "$VENV/bin/python" ]] && version_ok "$VENV/bin/python" && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    say "virtualenv: reusing $VENV ($("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])'))"
else
    if [[ -e "$VENV" ]]; then
        say "virtualenv: $VENV is broken or too old; making it again"
        rm -rf "$VENV"
    fi
    say "virtualenv: creating $VENV with $(command -v "$PYTHON")"
    "$PYTHON" -m venv "$VENV" || die "could not create the virtualenv $VENV (on Debian: apt-get install python3-venv)"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
say "pip: upgrading"
"$VENV/bin/python" -m pip install -q --upgrade pip

cd "$REPO"
if [[ "$MODE" == dev ]]; then
    say "pip: installing repfs from $REPO in editable mode with the dev extras"
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
else
    if "$VENV/bin/python" -m pip show repfs 2>/dev/null | grep -qx "Editable project location: $REPO"; then
        # A developer's venv: keep repfs editable so that tests keep seeing the work tree.
        say "pip: reinstalling repfs from $REPO (kept editable, as it was)"
        "$VENV/bin/python" -m pip install -q -e .
    else
        say "pip: installing repfs from $REPO"
        "$VENV/bin/python" -m pip install -q .
    fi
    # The commands on PATH, man pages, bash completion and documents under /usr/local.
    bash "$REPO/scripts/install-files.sh" </dev/null
fi

say "installed: $("$VENV/bin/repfs" --version) in $VENV"
