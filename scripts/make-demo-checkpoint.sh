#!/usr/bin/env bash
# Rebuilds static/nepa-demo.safetensors: NEPA pretrained on random crops (RandomResizedCrop
# 0.08–1 + flip) of the ten CC0 / public-domain scikit-image photos (no labels, no other data).
# D 128, 4 blocks, 4 heads, 64 px, patch 8 (8×8 grid), 1,200 steps of 10 crops: ~2 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-data.sh --only photos
NEPA=${NEPA:-target/release/nepa}
[ -x "$NEPA" ] || cargo build --release -p nepa-cli
PHOTOS=$(mktemp -d)
for f in astronaut.png chelsea.png coffee.png rocket.jpg hubble_deep_field.jpg camera.png retina.jpg brick.png grass.png gravel.png; do
  cp "data/photos/$f" "$PHOTOS/"
done
"$NEPA" pretrain --data "$PHOTOS" --out runs/demo --overwrite --dim 128 --depth 4 --heads 4 --image-size 64 --patch-size 8 \
  --batch-size 10 --steps 1200 --lr 1e-3 --warmup-ratio 0.05 --crop-min-scale 0.08 --seed 0 --save-every 0 --device flex
cp runs/demo/step-0001200.safetensors static/nepa-demo.safetensors
