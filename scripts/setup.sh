#!/usr/bin/env bash
# Installs everything nepa needs on a fresh Debian machine. Idempotent: a second run only
# checks. Needs root for apt (or sudo); everything else comes from crates.io and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
# Must equal the wasm-bindgen in Cargo.lock (pinned "=" in Cargo.toml).
WASM_BINDGEN_VERSION=0.2.130

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# Mesa's lavapipe: a Vulkan driver on the CPU, so native wgpu runs without a GPU.
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ -e /usr/share/vulkan/icd.d/lvp_icd.json ] || need_apt+=(mesa-vulkan-drivers)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown

if ! trunk --version 2>/dev/null | grep -q "$TRUNK_VERSION"; then
  echo "setup: cargo install trunk $TRUNK_VERSION"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  echo "setup: cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lockfile names a webpki-roots release the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# playwright-core only drives Debian's Chromium; it never downloads a browser.
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund)
fi
# wasm-opt for the web app's bundles (Trunk.toml's post-build hook): npm's binaryen, since
# Debian's broke the page.
if [ ! -x scripts/wasm-opt/node_modules/.bin/wasm-opt ]; then
  (cd scripts/wasm-opt && npm ci --no-audit --no-fund)
fi
echo "setup: ok"
