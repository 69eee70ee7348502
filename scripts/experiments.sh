#!/usr/bin/env bash
# Reproduces docs/results/fashion-mnist.md: NEPA pretraining, then fine-tuning on 1,000
# labels (100 a class, chosen by the seed) from the pretrained model and from random init, three
# seeds each, with the shared fine-tuning driver (`--recipe small-data`, docs/finetune-recipe.md),
# top-1 of the final EMA weights on the 10k test set; the raw-pixel baselines on the same labels
# (scripts/pixel-baselines.py, when its venv exists); and the stop-grad / shift ablations.
# CPU (Flex) by default; set DEVICE=wgpu or cuda for a GPU. Runs under runs/fmnist/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-data.sh --only fashion-mnist
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release --workspace
DEVICE=${DEVICE:-flex}
OUT=${OUT:-runs/fmnist}
DATA=data/fashion-mnist
SEEDS=${SEEDS:-"0 1 2"}
MODEL=(--dim 128 --depth 4 --heads 4 --image-size 28 --patch-size 4)
PRE=(--batch-size 64 --lr 1e-3 --warmup-ratio 0.05 --crop-min-scale 0.35 --seed 0 --device "$DEVICE" --save-every 1000)
FT=(--per-class 100 --val-fraction 0.1 --recipe small-data --device "$DEVICE")
PRE_STEPS=${PRE_STEPS:-4000}
ABLATION_STEPS=${ABLATION_STEPS:-500}
PYTHON=${PYTHON:-/work/venv-baselines/bin/python}

"$NEPA" pretrain --data "$DATA" --out "$OUT/pretrain" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$PRE_STEPS"
for seed in $SEEDS; do
  "$NEPA" finetune --data "$DATA" --init "$OUT/pretrain" --out "$OUT/ft-pretrained-s$seed" --overwrite "${FT[@]}" --seed "$seed"
  "$NEPA" finetune --data "$DATA" --from-scratch "${MODEL[@]}" --out "$OUT/ft-scratch-s$seed" --overwrite "${FT[@]}" --seed "$seed"
done
for run in "$OUT"/ft-*-s*; do
  echo "== $(basename "$run")"
  "$NEPA" eval --checkpoint "$run/classifier-ema.safetensors" --data "$DATA" --split test --device "$DEVICE" | tee "$run/test.txt"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
for kind in ("pretrained", "scratch"):
    accs = [float(re.search(r"top-1 accuracy ([\d.]+)%", (d / "test.txt").read_text()).group(1))
            for d in sorted(out.glob(f"ft-{kind}-s*"))]
    print(f"{kind}: {' '.join(f'{a:.2f}' for a in accs)} -> {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} %")
PY
if [ -x "$PYTHON" ]; then
  "$PYTHON" scripts/pixel-baselines.py --data "$DATA" --out "$OUT/pixel-baselines.json"
else
  echo "pixel baselines skipped: no $PYTHON (see scripts/pixel-baselines.py)"
fi
"$NEPA" pretrain --data "$DATA" --out "$OUT/no-stop-grad" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$ABLATION_STEPS" --no-stop-grad
"$NEPA" pretrain --data "$DATA" --out "$OUT/no-shift" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$ABLATION_STEPS" --no-shift
