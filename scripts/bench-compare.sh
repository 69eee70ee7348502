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
rm -f "$OUT"/*.json "$OUT"/*.log
# Both sides get the same threads: rayon's pool (Flex) and torch.set_num_threads.
THREADS=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$THREADS
# RUNS=N repeats the pair N times, taking turns, and summarises them: a single process of either
# program can land in a slow or fast state for its whole run, so one pair is one sample
# (docs/results/cpu-vs-pytorch.md).
RUNS=${RUNS:-1}
# PyTorch's matrix products are MKL's, and MKL runs its AVX-512 kernels only on CPUs it
# identifies as Intel's; on an AMD EPYC with AVX-512 it falls back to far slower kernels
# (measured in docs/results/cpu-vs-pytorch.md; docs/performance.md §9). The peer is PyTorch at
# its best, so on an AMD CPU MKL is told
# the CPU is Intel's by preloading a one-line `mkl_serv_intel_cpu_true` (the usual workaround);
# TORCH_AS_INSTALLED=1 skips it.
TORCH_ENV=()
if grep -q AuthenticAMD /proc/cpuinfo 2>/dev/null && [ "${TORCH_AS_INSTALLED:-0}" != 1 ]; then
  echo 'int mkl_serv_intel_cpu_true(void) { return 1; }' > "$OUT/mkl-intel-paths.c"
  if cc -shared -fPIC -o "$OUT/mkl-intel-paths.so" "$OUT/mkl-intel-paths.c"; then
    TORCH_ENV=(env LD_PRELOAD="$PWD/$OUT/mkl-intel-paths.so")
    echo "AMD CPU: PyTorch runs with MKL's Intel (AVX-512) paths forced (TORCH_AS_INSTALLED=1 skips this)"
  else
    echo "AMD CPU, no C compiler: PyTorch runs as installed (MKL's slower non-Intel paths)"
  fi
fi
CONFIG=(--image-size 32 --patch-size 4 --batch 16 --steps 10 --warmup 2)
for run in $(seq 1 "$RUNS"); do
  "$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device flex --profile \
    --out "$OUT/nepa-flex-$run.json" >/dev/null 2>"$OUT/nepa-flex-$run.log"
  [ "$run" = "$RUNS" ] && { grep -A12 "part by part" "$OUT/nepa-flex-$run.log" || true; }
  "${TORCH_ENV[@]}" "$VENV/bin/python" tests/reference/bench.py --hidden-size 192 --layers 6 --heads 3 "${CONFIG[@]}" \
    --threads "$THREADS" --device cpu --out "$OUT/torch-cpu-$run.json" >/dev/null
done
if [ "${WGPU:-1}" = 1 ]; then
  "$NEPA" bench --dim 192 --depth 6 --heads 3 "${CONFIG[@]}" --device wgpu \
    --out "$OUT/nepa-wgpu.json" >/dev/null 2>&1 || echo "nepa on wgpu failed (no adapter?)"
fi
python3 - "$OUT" "$THREADS" "$RUNS" <<'PY'
import json, os, statistics, sys
out, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
load = lambda name: json.load(open(os.path.join(out, name)))
ips = lambda r: (r["train"]["images_per_sec"], r["inference"]["images_per_sec"])
print(f"threads: {threads} each; {runs} run(s), taking turns")
print(f"{'run':>4} {'nepa Flex train / infer img/s':>30} {'PyTorch CPU train / infer img/s':>32} {'x PyTorch':>14}")
pairs = []
for i in range(1, runs + 1):
    nepa, torch = ips(load(f"nepa-flex-{i}.json")), ips(load(f"torch-cpu-{i}.json"))
    pairs.append((nepa, torch))
    print(f"{i:4} {nepa[0]:14.1f} / {nepa[1]:7.1f} {torch[0]:16.1f} / {torch[1]:7.1f}"
          f"      {nepa[0] / torch[0]:.2f}x / {nepa[1] / torch[1]:.2f}x")
if os.path.exists(os.path.join(out, "nepa-wgpu.json")):
    r = load("nepa-wgpu.json")
    print(f"nepa on wgpu ({r['adapter'][:40]}): {ips(r)[0]:.1f} / {ips(r)[1]:.1f} img/s (information only)")
for k, part in enumerate(("train", "inference")):
    nepa = statistics.median(p[0][k] for p in pairs)
    torch = statistics.median(p[1][k] for p in pairs)
    line = f"nepa Flex / PyTorch CPU, {part}: {nepa / torch:.2f}x"
    if runs > 1:
        per_run = statistics.median(p[0][k] / p[1][k] for p in pairs)
        line += (f" (medians {nepa:.1f} / {torch:.1f} img/s; median of the per-run ratios "
                 f"{per_run:.2f}x, lowest {min(p[0][k] / p[1][k] for p in pairs):.2f}x)")
    print(line)
PY
