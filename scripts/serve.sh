#!/usr/bin/env bash
# The web app's main command: install what is missing (scripts/setup.sh), build the page
# with trunk (release, wasm32) and serve it on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec trunk serve --release --address 127.0.0.1 --port "${PORT:-8080}" "$@"
