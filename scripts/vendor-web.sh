#!/usr/bin/env bash
# Refresh the browser libraries the web interface vendors (repfs/web/static/vendor/) from
# the npm registry, at the versions scripts/web-vendor/package-lock.json pins, with their
# licences, and write their SHA-256 sums (checked by tests/unit/test_web_vendor.py).
# Needs Node.js and npm; run it only to change a version (then update the paths in
# repfs/web/static/index.html and the versions in docs/API.md).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$REPO/scripts/web-vendor/package.json" "$REPO/scripts/web-vendor/package-lock.json" "$WORK/"
(cd "$WORK" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
version() { node -p "require('$WORK/node_modules/$1/package.json').version"; }
OUT="$REPO/repfs/web/static/vendor"
UPPY="$OUT/uppy-$(version uppy)"
UPLOT="$OUT/uplot-$(version uplot)"
rm -rf "$OUT"/uppy-* "$OUT"/uplot-*
mkdir -p "$UPPY" "$UPLOT"
cp "$WORK/node_modules/uppy/dist/uppy.min.js" "$WORK/node_modules/uppy/dist/uppy.min.css" "$UPPY/"
cp "$WORK/node_modules/uppy/LICENSE" "$UPPY/LICENSE.txt"
# Uppy's bundle holds tus-js-client (through @uppy/tus): its licence goes beside it
cp "$WORK/node_modules/tus-js-client/LICENSE" "$UPPY/LICENSE-tus-js-client.txt"
cp "$WORK/node_modules/uplot/dist/uPlot.iife.min.js" "$WORK/node_modules/uplot/dist/uPlot.min.css" "$UPLOT/"
cp "$WORK/node_modules/uplot/LICENSE" "$UPLOT/LICENSE.txt"
(cd "$OUT" && find . -type f ! -name SHA256SUMS ! -name README.md | sort | xargs sha256sum > SHA256SUMS)
echo "vendored: uppy $(version uppy) (tus-js-client $(version tus-js-client)), uplot $(version uplot)"
