#!/usr/bin/env bash
# Side-by-side throughput on this machine, same config and batch, one run after the other:
# nepa on Flex (CPU), PyTorch on CPU (the reference bench) and, for information, nepa on
# wgpu (lavapipe here, a GPU elsewhere). Needs a venv with torch: VENV=path (default .venv).
# Reports go to runs/bench/*.json; a summary table is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release -p nepa-cli
OUT=runs/bench
mkdir -p "$OUT"
THREADS=$(nproc)
CONFIG=(--image-size 32 --patch-size 4 --batch 16 --steps 10 --warmup 2)
"$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device flex --out "$OUT/nepa-flex.json" >/dev/null
"$VENV/bin/python" tests/reference/bench.py --hidden-size 192 --layers 6 --heads 3 "${CONFIG[@]}" \
  --threads "$THREADS" --device cpu --out "$OUT/torch-cpu.json" >/dev/null
"$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device wgpu --out "$OUT/nepa-wgpu.json" >/dev/null || true
python3 - "$OUT"/*.json <<'PY'
import json, sys
print(f"{'tool':18} {'backend':10} {'adapter':40} {'train img/s':>12} {'infer img/s':>12}")
for path in sys.argv[1:]:
    r = json.load(open(path))
    print(f"{r['tool']:18} {r['backend']:10} {r['adapter'][:40]:40} "
          f"{r['train']['images_per_sec']:12.1f} {r['inference']['images_per_sec']:12.1f}")
PY
