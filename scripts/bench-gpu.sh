#!/usr/bin/env bash
# NEPA-B (D 768, 12 layers, 12 heads, 224 px, patch 14, batch 64) on one GPU, nepa against
# PyTorch: one run report per row in $OUT_DIR and a markdown table of them
# (scripts/bench-table.py) in $OUT_DIR/table.md and on stdout. A nepa row's first training step
# compiles and autotunes every kernel (minutes on an H200 with Vulkan: docs/results/gpu.md), so
# each nepa row takes minutes; the PyTorch rows seconds.
#
#   scripts/bench-gpu.sh           the GPU rows: nepa on Vulkan f32 (a cold kernel cache, then
#                                  a warm one) / f16, Vulkan f32 with the fused attention
#                                  kernels, Vulkan f32 with gradient checkpointing at batch
#                                  256, PyTorch cuda bf16 autocast + SDPA (the official
#                                  recipe's setting) and PyTorch cuda f32; with NEPA_CUDA=1 (a
#                                  binary built with --features cuda, see docs/performance.md §1)
#                                  also nepa cuda f32 / bf16 / bf16 with the fused kernels
#   scripts/bench-gpu.sh --smoke   a tiny config on Flex (CPU) and PyTorch CPU: checks the script
#                                  itself, in seconds, on any machine (CI runs it)
#
# Environment: NEPA (default target/release/nepa; the GPU mode builds it when it is missing,
# the smoke mode never builds), PYTHON (with torch; default .venv/bin/python, else
# python3), OUT_DIR (default runs/bench-gpu, or runs/bench-gpu-smoke), ROW_TIMEOUT (seconds per
# row, default 300 on a GPU), WARMUP / STEPS / RUNS (nepa rows: 2 / 5 / 5; PyTorch: 3 / 10 /
# 10). A row that fails is reported with its stderr and marked "failed" in the table; the
# other rows still run. Without torch in $PYTHON the PyTorch rows are skipped, and said so.
set -euo pipefail
# Paths given in the environment are relative to where the script was called from.
CALLER_DIR=$PWD
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_DIR/$1" ;; esac; }
[ -n "${NEPA:-}" ] && NEPA=$(absolute "$NEPA")
[ -n "${OUT_DIR:-}" ] && OUT_DIR=$(absolute "$OUT_DIR")
case "${PYTHON:-}" in */*) PYTHON=$(absolute "$PYTHON") ;; esac
cd "$(dirname "$0")/.."

usage() { sed -n '2,21p' "scripts/bench-gpu.sh" | sed 's/^# \{0,1\}//'; }

MODE=gpu
case "${1:-}" in
  "") ;;
  --smoke) MODE=smoke ;;
  -h | --help) usage; exit 0 ;;
  *) echo "bench-gpu.sh: unknown argument '$1' (expected --smoke or nothing)" >&2; exit 2 ;;
esac

DEFAULT_NEPA=target/release/nepa
NEPA=${NEPA:-$DEFAULT_NEPA}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ "$MODE" = smoke ]; then
  OUT_DIR=${OUT_DIR:-runs/bench-gpu-smoke}
  ROW_TIMEOUT=${ROW_TIMEOUT:-600}
else
  OUT_DIR=${OUT_DIR:-runs/bench-gpu}
  # Long enough for a nepa row's first step (kernel compilation and autotune, docs/results/gpu.md),
  # short enough that one that hangs (a driver, an autotune loop) does not eat the rest.
  ROW_TIMEOUT=${ROW_TIMEOUT:-300}
fi
mkdir -p "$OUT_DIR"
# nepa's kernel cache (docs/performance.md §1) starts empty in each run, so the first nepa row
# of a shape is a cold start and the `-warm` row after it a warm one.
export NEPA_KERNEL_CACHE="$OUT_DIR/kernel-cache"
rm -rf "$NEPA_KERNEL_CACHE"

# The smoke mode checks whatever binary it is given (the test passes its own build): building
# here would hide which binary ran, and take minutes on a small CI machine.
if [ ! -x "$NEPA" ]; then
  if [ "$MODE" = smoke ] || [ "$NEPA" != "$DEFAULT_NEPA" ]; then
    echo "bench-gpu.sh: NEPA=$NEPA does not exist or is not executable" >&2
    exit 1
  fi
  echo "building $NEPA (cargo build --release -p nepa-cli)"
  cargo build --release -p nepa-cli
fi

HAVE_TORCH=1
"$PYTHON" -c 'import torch' >/dev/null 2>&1 || HAVE_TORCH=0
SKIP_NOTE=""
if [ "$HAVE_TORCH" = 0 ]; then
  SKIP_NOTE="PyTorch rows skipped: no torch in $PYTHON"
  echo "$SKIP_NOTE"
fi

ROWS=()  # report paths in table order, failed ones included

# row NAME CMD...: runs CMD --out $OUT_DIR/NAME.json; on failure prints why and the end of its
# stderr, writes the reason to NAME.failed (the table shows it) and returns 0, so the next row runs.
row() {
  local name=$1
  shift
  local json="$OUT_DIR/$name.json" err="$OUT_DIR/$name.stderr" rc=0 why
  rm -f "$json" "$OUT_DIR/$name.failed"
  ROWS+=("$json")
  echo "== $name"
  timeout "$ROW_TIMEOUT" "$@" --out "$json" >"$OUT_DIR/$name.stdout" 2>"$err" || rc=$?
  if [ "$rc" = 0 ] && [ -s "$json" ]; then
    return 0
  fi
  if [ "$rc" = 124 ]; then
    why="timed out after ${ROW_TIMEOUT}s"
  elif [ "$rc" != 0 ]; then
    why="exit status $rc"
  else
    why="exit status 0 but no report written"
  fi
  rm -f "$json"
  echo "row $name failed: $why; last lines of stderr ($err):"
  tail -n 20 "$err" | sed 's/^/    /'
  echo "$why" >"$OUT_DIR/$name.failed"
}

torch_row() {
  if [ "$HAVE_TORCH" = 1 ]; then row "$@"; fi
}

if [ "$MODE" = smoke ]; then
  MODEL=(--image-size 32 --patch-size 8 --batch 4 --steps 2 --warmup 1 --runs 2)
  NEPA_MODEL=(--dim 64 --depth 2 --heads 2 "${MODEL[@]}")
  TORCH_MODEL=(--hidden-size 64 --layers 2 --heads 2 "${MODEL[@]}" --device cpu --threads "$(nproc)")
  CONFIG="D 64, 2 layers, 2 heads, 32 px, patch 8, batch 4; 1 warm-up + 2 timed steps, 2 timed runs"
  row nepa-flex-f32 "$NEPA" bench --device flex --precision f32 "${NEPA_MODEL[@]}"
  row nepa-flex-bf16 "$NEPA" bench --device flex --precision bf16 "${NEPA_MODEL[@]}"
  torch_row torch-cpu-f32 "$PYTHON" tests/reference/bench.py "${TORCH_MODEL[@]}"
  torch_row torch-cpu-bf16 "$PYTHON" tests/reference/bench.py "${TORCH_MODEL[@]}" --amp bf16
else
  SIZE=(--image-size 224 --patch-size 14)
  # nepa's steps are seconds each before a GPU kernel cache is warm: fewer of them.
  TIMED=(--batch 64 --warmup "${WARMUP:-2}" --steps "${STEPS:-5}" --runs "${RUNS:-5}")
  TORCH_TIMED=(--batch 64 --warmup "${WARMUP:-3}" --steps "${STEPS:-10}" --runs "${RUNS:-10}")
  NEPA_MODEL=(--dim 768 --depth 12 --heads 12 "${SIZE[@]}")
  TORCH_MODEL=(--preset base "${SIZE[@]}" "${TORCH_TIMED[@]}" --device cuda)
  CONFIG="NEPA-B: D 768, 12 layers, 12 heads, 224 px, patch 14, batch 64; nepa ${WARMUP:-2} warm-up + ${STEPS:-5} timed steps and runs, PyTorch ${WARMUP:-3} + ${STEPS:-10}"
  if [ "${NEPA_CUDA:-0}" = 1 ]; then
    row nepa-cuda-f32 "$NEPA" bench --device cuda --precision f32 "${NEPA_MODEL[@]}" "${TIMED[@]}"
    row nepa-cuda-bf16 "$NEPA" bench --device cuda --precision bf16 "${NEPA_MODEL[@]}" "${TIMED[@]}"
    row nepa-cuda-bf16-fused "$NEPA" bench --device cuda --precision bf16 --attention fused \
      "${NEPA_MODEL[@]}" "${TIMED[@]}"
  fi
  row nepa-vulkan-f32 "$NEPA" bench --device vulkan --precision f32 "${NEPA_MODEL[@]}" "${TIMED[@]}"
  # The same row again on the kernel cache the row above filled: its first step is the warm one.
  row nepa-vulkan-f32-warm "$NEPA" bench --device vulkan --precision f32 "${NEPA_MODEL[@]}" "${TIMED[@]}"
  # nepa's fused attention kernels (docs/attention.md) beside the decomposed path above.
  row nepa-vulkan-f32-fused "$NEPA" bench --device vulkan --precision f32 --attention fused \
    "${NEPA_MODEL[@]}" "${TIMED[@]}"
  row nepa-vulkan-f16 "$NEPA" bench --device vulkan --precision f16 "${NEPA_MODEL[@]}" "${TIMED[@]}"
  # A memory row: batch 256 with checkpointing; few steps keep it short.
  row nepa-vulkan-f32-checkpointing-b256 "$NEPA" bench --device vulkan --precision f32 \
    --gradient-checkpointing "${NEPA_MODEL[@]}" --batch 256 --warmup 1 --steps 3 --runs 1
  torch_row torch-cuda-bf16-sdpa "$PYTHON" tests/reference/bench.py "${TORCH_MODEL[@]}" --amp bf16 --sdpa
  torch_row torch-cuda-f32 "$PYTHON" tests/reference/bench.py "${TORCH_MODEL[@]}"
fi

TABLE_ARGS=(--title "NEPA bench ($MODE)" --config "$CONFIG")
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
  if [ -n "$GPU" ]; then TABLE_ARGS+=(--gpu "$GPU"); fi
fi
if [ -n "$SKIP_NOTE" ]; then TABLE_ARGS+=(--note "$SKIP_NOTE"); fi
echo
python3 scripts/bench-table.py "${TABLE_ARGS[@]}" "${ROWS[@]}" | tee "$OUT_DIR/table.md"
