#!/usr/bin/env bash
# Install everything (with the dev extras) and run the whole test suite: ruff, mypy, pytest.
#
#   bash scripts/test.sh [PYTEST ARGS...]     e.g. bash scripts/test.sh -k rename -x
#
# Runs every step even when one fails, then exits non-zero if any failed. Needs no
# standard input (CI runs it with none).
#
# Environment:
#   REPFS_VENV            the virtualenv                          [default: <repo>/.venv]
#   REPFS_SKIP_INSTALL=1  skip scripts/install.sh (the venv must exist already)
#   REPFS_TEST_TIMEOUT    seconds one test may take               [default: 300]
#   REPFS_SUITE_TIMEOUT   seconds the whole pytest run may take   [default: 2700]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export REPFS_VENV="${REPFS_VENV:-$REPO/.venv}"

section() { printf '\n===== %s =====\n' "$*"; }

section "install (scripts/install.sh --dev)"
if [[ "${REPFS_SKIP_INSTALL:-0}" == 1 ]]; then
    echo "skipped (REPFS_SKIP_INSTALL=1)"
else
    bash "$REPO/scripts/install.sh" --dev </dev/null
fi

export PATH="$REPFS_VENV/bin:$PATH" VIRTUAL_ENV="$REPFS_VENV"
export PYTHONDONTWRITEBYTECODE=1
hash -r

failed=()
run_step() { # name command...
    local name="$1" rc=0
    shift
    section "$name"
    echo "+ $*"
    "$@" </dev/null || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "----- $name: FAILED (exit $rc)"
        failed+=("$name")
    else
        echo "----- $name: ok"
    fi
}

lint_paths=(repfs tests)
[[ -d bench ]] && lint_paths+=(bench)
run_step "ruff" ruff check "${lint_paths[@]}"
run_step "mypy" mypy

# pytest gets a fresh base temp dir; FUSE mounts a test left behind in it are
# detached afterwards so that a failed test never leaves a mount on the machine.
BASETEMP="$(mktemp -d "${TMPDIR:-/tmp}/repfs-test.XXXXXX")"
cleanup() {
    if [[ -d "$BASETEMP" ]]; then
        awk -v base="$BASETEMP/" 'index($5, base) == 1 { print $5 }' /proc/self/mountinfo |
            sort -r | while read -r mnt; do
            echo "test.sh: detaching a mount left behind: $mnt" >&2
            fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        done
        rm -rf --one-file-system "$BASETEMP" 2>/dev/null || true
    fi
}
trap cleanup EXIT

section "pytest"
echo "+ pytest -q tests --timeout=${REPFS_TEST_TIMEOUT:-300} --basetemp=$BASETEMP $*"
rc=0
timeout --foreground --signal=TERM --kill-after=60 "${REPFS_SUITE_TIMEOUT:-2700}" \
    python -m pytest -q tests --timeout="${REPFS_TEST_TIMEOUT:-300}" --basetemp="$BASETEMP" "$@" </dev/null || rc=$?
case $rc in
    0) echo "----- pytest: ok" ;;
    5) echo "----- pytest: no tests were collected (counted as success)" ;;
    124 | 137) echo "----- pytest: FAILED (the suite ran over ${REPFS_SUITE_TIMEOUT:-2700}s and was stopped)"; failed+=(pytest) ;;
    *) echo "----- pytest: FAILED (exit $rc)"; failed+=(pytest) ;;
esac

section "summary"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed (ruff, mypy, pytest)"
