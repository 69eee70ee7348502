#!/usr/bin/env bash
# Reproduces the README's Fashion-MNIST figures: NEPA pretraining, fine-tuning on 1,000
# labels against the same fine-tuning from random init, and the stop-grad / shift ablations.
# CPU (Flex) by default; set DEVICE=wgpu or cuda for a GPU. Runs under runs/fmnist/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-data.sh --only fashion-mnist
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release -p nepa-cli
DEVICE=${DEVICE:-flex}
OUT=${OUT:-runs/fmnist}
DATA=data/fashion-mnist
MODEL=(--dim 128 --depth 4 --heads 4 --image-size 28 --patch-size 4)
PRE=(--batch-size 64 --lr 1e-3 --warmup-ratio 0.05 --crop-min-scale 0.35 --seed 0 --device "$DEVICE" --save-every 500)
FT=(--per-class 100 --val-fraction 0.1 --epochs 30 --batch-size 64 --lr 1e-3 --head-lr 1e-3 --layer-decay 0.75
    --crop-min-scale 0.5 --seed 0 --device "$DEVICE")
PRE_STEPS=${PRE_STEPS:-2000}
ABLATION_STEPS=${ABLATION_STEPS:-500}

"$NEPA" pretrain --data "$DATA" --out "$OUT/pretrain" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$PRE_STEPS"
"$NEPA" pretrain --data "$DATA" --out "$OUT/no-stop-grad" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$ABLATION_STEPS" --no-stop-grad
"$NEPA" pretrain --data "$DATA" --out "$OUT/no-shift" --overwrite "${MODEL[@]}" "${PRE[@]}" --steps "$ABLATION_STEPS" --no-shift

"$NEPA" finetune --data "$DATA" --init "$OUT/pretrain" --out "$OUT/ft-pretrained" --overwrite "${FT[@]}"
"$NEPA" finetune --data "$DATA" --from-scratch "${MODEL[@]}" --out "$OUT/ft-scratch" --overwrite "${FT[@]}"
"$NEPA" finetune --data "$DATA" --init "$OUT/no-shift" --out "$OUT/ft-no-shift" --overwrite "${FT[@]}"
for run in ft-pretrained ft-scratch ft-no-shift; do
  echo "== $run"
  "$NEPA" eval --checkpoint "$OUT/$run/classifier.safetensors" --data "$DATA" --split test --device "$DEVICE"
done
