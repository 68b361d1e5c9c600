#!/usr/bin/env bash
# Install repfs and mount a filesystem on the embedded default: three local directory
# pools under one data folder, 2 replicas of every block, a random key file, mounted in
# the background.
#
#   bash scripts/quickstart.sh       as root (not root: sudo bash scripts/quickstart.sh)
#
# Safe to run again: the key and the filesystem are made once; a filesystem that is
# already mounted is left as it is.
#
# Environment:
#   REPFS_DATA         the data folder (pools, key, metadata, cache, log) [default: /var/lib/repfs]
#   REPFS_MOUNT        the mount point                                    [default: /mnt/repfs]
#   REPFS_VENV         the virtualenv                                     [default: <repo>/.venv]
#   REPFS_MOUNT_OPTS   more options for `repfs mount`, e.g. "-o allow_other --cache-size 8G"
#   REPFS_SKIP_INSTALL=1  do not run scripts/install.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPFS_VENV="${REPFS_VENV:-$REPO/.venv}"
DATA="${REPFS_DATA:-/var/lib/repfs}"
MNT="${REPFS_MOUNT:-/mnt/repfs}"
read -r -a MOUNT_OPTS <<<"${REPFS_MOUNT_OPTS:-}"

die() {
    printf 'quickstart.sh: error: %s\n' "$*" >&2
    exit 1
}
say() { printf '==> %s\n' "$*"; }

[[ "$DATA" == /* ]] || DATA="$PWD/$DATA"
[[ "$MNT" == /* ]] || MNT="$PWD/$MNT"
FS="$DATA/fs"
KEY="$DATA/keyfile"
LOG="$FS/repfs.log"

if [[ "${REPFS_SKIP_INSTALL:-0}" != 1 ]]; then
    bash "$REPO/scripts/install.sh" --user </dev/null
fi
REPFS="$REPFS_VENV/bin/repfs"
[[ -x "$REPFS" ]] || die "$REPFS is missing; run scripts/install.sh first"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: load the module (modprobe fuse), or in a container
  start it with --device /dev/fuse --cap-add SYS_ADMIN"

summary() {
    local cmd=repfs admin=repfs-admin
    [[ "$(command -v repfs 2>/dev/null || true)" -ef "$REPFS" ]] || cmd="$REPFS"
    [[ "$(command -v repfs-admin 2>/dev/null || true)" -ef "$REPFS_VENV/bin/repfs-admin" ]] ||
        admin="$REPFS_VENV/bin/repfs-admin"
    cat <<EOF

repfs is mounted on $MNT
  use it:       cp, rsync, editors... anything under $MNT
  log file:     $LOG
  data folder:  $DATA
    pools:      $DATA/pools/pool1 pool2 pool3 (encrypted blocks, 2 copies of each)
    metadata:   $FS/meta (LMDB) and $FS/repfs.toml (configuration)
    cache:      $FS/cache (writes staged here until they are on the pools)
    key:        $KEY (keep a copy elsewhere: without it the data cannot be read)
  status:       $admin -m $MNT status      (pools, alerts, repair; man repfs-admin)
  unmount:      $cmd umount $MNT
  mount again:  $cmd mount $FS $MNT --key-file $KEY
EOF
}

# --- already mounted? --------------------------------------------------------------------
mount_source() { findmnt -n -o SOURCE --mountpoint "$MNT" 2>/dev/null | tail -n 1 || true; }
src="$(mount_source)"
if [[ -n "$src" ]]; then
    if ! stat "$MNT" >/dev/null 2>&1; then
        # The daemon died (e.g. killed) and left the mount behind: detach it and mount again;
        # the blocks it had staged are stored at this mount.
        say "$MNT is a mount whose daemon is gone ($src); detaching it"
        fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT"
    elif [[ "$src" == "repfs:$FS" ]]; then
        echo "repfs is already mounted on $MNT ($FS); nothing to do."
        summary
        exit 0
    else
        die "$MNT is already in use by another mount ($src); set REPFS_MOUNT to another folder"
    fi
fi

# --- data folder, pools, key -------------------------------------------------------------
mkdir -p "$DATA" 2>/dev/null || die "cannot create $DATA; run as root (or with sudo) or set REPFS_DATA to a folder you own"
chmod 700 "$DATA"
mkdir -p "$DATA/pools/pool1" "$DATA/pools/pool2" "$DATA/pools/pool3"

if [[ ! -e "$KEY" ]]; then
    # 32 random bytes, written as 64 hex digits (no line end): printable, so the key file
    # can be backed up or pasted without mangling it.
    (
        umask 077
        tmp="$(mktemp "$DATA/.keyfile.XXXXXX")"
        head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$tmp"
        chmod 600 "$tmp"
        ln "$tmp" "$KEY" 2>/dev/null || true # never replaces an existing key
        rm -f "$tmp"
    )
    [[ -s "$KEY" ]] || die "could not create the key file $KEY"
    say "created the key file $KEY"
else
    say "using the existing key file $KEY"
fi

# --- filesystem --------------------------------------------------------------------------
if [[ -e "$FS/repfs.toml" ]]; then
    say "using the existing filesystem in $FS"
else
    say "creating the filesystem in $FS"
    "$REPFS" mkfs "$FS" \
        --pool "file://$DATA/pools/pool1" \
        --pool "file://$DATA/pools/pool2" \
        --pool "file://$DATA/pools/pool3" \
        --replicas 2 \
        --key-file "$KEY" </dev/null
fi

# --- mount -------------------------------------------------------------------------------
mkdir -p "$MNT" 2>/dev/null || die "cannot create the mount point $MNT; run as root or set REPFS_MOUNT"
say "mounting $FS on $MNT"
"$REPFS" mount "$FS" "$MNT" --key-file "$KEY" "${MOUNT_OPTS[@]}" </dev/null ||
    die "the mount failed; see $LOG"
summary
