#!/usr/bin/env bash
# Trunk post-build hook (Trunk.toml): shrinks the page's and the engine's wasm with wasm-opt
# from npm's binaryen (scripts/wasm-opt/, installed by scripts/setup.sh; Debian's binaryen
# broke the page), then writes a gzip copy of each bundle and script next to it, for servers
# that serve precompressed files (the e2e tests' server does). NEPA_WASM_OPT=0 skips
# wasm-opt (a quicker local build).
set -euo pipefail
dir="${TRUNK_STAGING_DIR:?run by trunk}"
bin="${TRUNK_SOURCE_DIR:-.}/scripts/wasm-opt/node_modules/.bin/wasm-opt"
if [ "${NEPA_WASM_OPT:-1}" = 0 ]; then
  echo "wasm-opt: skipped (NEPA_WASM_OPT=0)"
elif [ ! -x "$bin" ]; then
  echo "wasm-opt: $bin is missing (scripts/setup.sh installs it)" >&2
  exit 1
else
  for wasm in "$dir"/*.wasm; do
    before=$(stat -c %s "$wasm")
    "$bin" -Oz --strip-debug --strip-producers "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    echo "wasm-opt: $(basename "$wasm") $before -> $(stat -c %s "$wasm") bytes"
  done
fi
for file in "$dir"/*.wasm "$dir"/*.js; do
  gzip -9 -k -f "$file"
done
