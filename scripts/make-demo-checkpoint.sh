#!/usr/bin/env bash
# Rebuilds the bundled demo model, static/nepa-demo.safetensors, and its record, static/nepa-demo.md:
# NEPA pretrained on random resized crops (scale 0.08–1, and flips) of every shippable photo
# that scripts/fetch-data.sh fetches: scikit-image's photos (all but motorcycle_left, research data
# that must not ship) and libjxl-testdata's 17 photos. No labels, no other data.
# Model and length: MODEL and TRAIN_ARGS below; docs/results/demo-model.md has what it took and what
# its features carry. Runs on the CPU (Flex); NEPA_DEVICE=auto takes a GPU when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-data.sh --only photos
scripts/fetch-data.sh --only photos-jxl
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release -p nepa-cli

TRAIN=$(mktemp -d)
trap 'rm -rf "$TRAIN"' EXIT
mkdir -p "$TRAIN/photos" "$TRAIN/photos-jxl"
for f in data/photos/*.png data/photos/*.jpg; do
  [ "$(basename "$f")" = motorcycle_left.png ] || cp "$f" "$TRAIN/photos/"
done
cp data/photos-jxl/*.png "$TRAIN/photos-jxl/"

# 96 px / patch 8: a 12×12 grid. 3,500 steps of 28 crops (one of each photo) = 98,000 crops.
MODEL=(--dim 64 --depth 4 --heads 4 --image-size 96 --patch-size 8)
TRAIN_ARGS=(--batch-size 28 --steps 3500 --lr 1e-3 --warmup-ratio 0.05 --crop-min-scale 0.08 --seed 0)
OUT=runs/demo
"$NEPA" pretrain --data "$TRAIN" --out "$OUT" --overwrite "${MODEL[@]}" "${TRAIN_ARGS[@]}" \
  --save-every 1000 --device "${NEPA_DEVICE:-flex}"

cp "$OUT/step-0003500.safetensors" static/nepa-demo.safetensors
python3 scripts/demo-metadata.py static/nepa-demo.safetensors static/nepa-demo.md \
  "nepa pretrain --data <photos> ${MODEL[*]} ${TRAIN_ARGS[*]} --device ${NEPA_DEVICE:-flex}" \
  "$TRAIN" data/photos/LICENSES.txt data/photos-jxl/LICENSES.txt
ls -l static/nepa-demo.safetensors
