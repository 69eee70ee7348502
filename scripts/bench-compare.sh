#!/usr/bin/env bash
# Side-by-side throughput on this machine, same config, batch and thread count, one run after
# the other: nepa on Flex (CPU, release build) and the PyTorch reference bench on the CPU, then
# the ratio nepa / PyTorch. nepa on wgpu runs too, for information (a software adapter here, a
# GPU elsewhere). Needs a venv with torch: VENV=path (default .venv). NEPA=path picks the binary
# (default target/release/nepa, built if missing). Reports go to runs/bench/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release -p nepa-cli
OUT=runs/bench
mkdir -p "$OUT"
rm -f "$OUT"/*.json
# Both sides get the same threads: rayon's pool (Flex) and torch.set_num_threads.
THREADS=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$THREADS
CONFIG=(--image-size 32 --patch-size 4 --batch 16 --steps 10 --warmup 2)
"$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device flex --profile \
  --out "$OUT/nepa-flex.json" >/dev/null 2>"$OUT/nepa-flex.log"
grep -A12 "part by part" "$OUT/nepa-flex.log" || true
"$VENV/bin/python" tests/reference/bench.py --hidden-size 192 --layers 6 --heads 3 "${CONFIG[@]}" \
  --threads "$THREADS" --device cpu --out "$OUT/torch-cpu.json" >/dev/null
if [ "${WGPU:-1}" = 1 ]; then
  "$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device wgpu \
    --out "$OUT/nepa-wgpu.json" >/dev/null 2>&1 || echo "nepa on wgpu failed (no adapter?)"
fi
python3 - "$OUT" "$THREADS" <<'PY'
import json, os, sys
out, threads = sys.argv[1], sys.argv[2]
reports = {n[:-5]: json.load(open(os.path.join(out, n))) for n in sorted(os.listdir(out)) if n.endswith(".json")}
print(f"threads: {threads} each")
print(f"{'tool':18} {'backend':10} {'adapter':40} {'train img/s':>12} {'infer img/s':>12}")
for r in reports.values():
    print(f"{r['tool']:18} {r['backend']:10} {r['adapter'][:40]:40} "
          f"{r['train']['images_per_sec']:12.1f} {r['inference']['images_per_sec']:12.1f}")
nepa, torch = reports.get("nepa-flex"), reports.get("torch-cpu")
if nepa and torch:
    for part in ("train", "inference"):
        ratio = nepa[part]["images_per_sec"] / torch[part]["images_per_sec"]
        print(f"nepa Flex / PyTorch CPU, {part}: {ratio:.2f}x")
PY
