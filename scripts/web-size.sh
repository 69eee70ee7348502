#!/usr/bin/env bash
# Prints the size of the built web app's wasm bundles (dist/, after `trunk build`): raw and
# gzip, the page and the engine worker. The figures in docs/results/browser.md come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
for wasm in dist/*.wasm; do
  raw=$(stat -c %s "$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  awk -v n="$(basename "$wasm")" -v r="$raw" -v g="$gz" \
    'BEGIN { printf "%-28s raw %6.2f MB  gzip %5.2f MB\n", n, r / 1e6, g / 1e6 }'
done
