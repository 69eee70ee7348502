#!/usr/bin/env bash
# Prepares a CUDA build of the CLI with nothing downloaded outside the project's package
# sources (docs/performance.md §1). cubecl-cuda links LLVM 23.1 through tracel-llvm-bundler,
# whose build script downloads a prebuilt LLVM from GitHub unless one is installed in its data
# folder. This puts PyPI's static LLVM 23.1.1 (mlc-llvm-static, NVPTX included) in a virtual
# environment and links its prefix where the bundler looks, marked as installed. Then:
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p nepa-cli --features cuda
#
# (no CUDA toolkit needed to build; at run time the binary loads libcuda and libnvrtc, and says
# which is missing when one is). Environment: NEPA_LLVM_VENV (default ~/.cache/nepa/llvm-venv),
# XDG_DATA_HOME (the bundler's data folder, default ~/.local/share), PYTHON (default python3).
set -euo pipefail

LLVM_PIN='mlc-llvm-static[all]==23.1.1.post0'
# The bundler's folder name for the LLVM it expects (tracel-llvm-bundler 23.1.0-4).
BUNDLER_DIR=tracel-llvm-23.1.0-4
VENV=${NEPA_LLVM_VENV:-$HOME/.cache/nepa/llvm-venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$LLVM_PIN"
PREFIX=$("$VENV/bin/python" -m mlc_llvm_static.config --prefix)
[ -f "$PREFIX/bin/llvm-config" ] || { echo "setup-cuda: no llvm-config under $PREFIX" >&2; exit 1; }
chmod +x "$PREFIX/bin/llvm-config"
VERSION=$("$PREFIX/bin/llvm-config" --version)
case "$VERSION" in
  23.1.*) ;;
  *) echo "setup-cuda: $LLVM_PIN reports LLVM $VERSION; cubecl-cuda needs 23.1" >&2; exit 1 ;;
esac

DATA=${XDG_DATA_HOME:-$HOME/.local/share}/tracel
mkdir -p "$DATA"
if [ -e "$DATA/$BUNDLER_DIR" ] && [ ! -L "$DATA/$BUNDLER_DIR" ]; then
  echo "setup-cuda: $DATA/$BUNDLER_DIR exists and is not this script's link; left as it is"
else
  ln -sfn "$PREFIX" "$DATA/$BUNDLER_DIR"
fi
touch "$DATA/$BUNDLER_DIR/.tracel-llvm-installed"
echo "setup-cuda: LLVM $VERSION at $PREFIX, linked as $DATA/$BUNDLER_DIR"
echo "next: CUDARC_CUDA_VERSION=13000 cargo build --release -p nepa-cli --features cuda"
