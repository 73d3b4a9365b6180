#!/usr/bin/env bash
# Test NLL after a stated CPU budget (epochs of a stated model; the wall time is measured).
# Usage: bash bench/budget_runs.sh [OUT_DIR]   (default runs/budget). Figures go in docs/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/budget}
G=.venv/bin/genzoo
TIMEFORMAT="wall %R s"
SMALL="--hidden-channels 32 --num-layers 5 --head-channels 64 --batch-size 64 --lr 2e-3 --warmup-steps 200 --threads 2"
mkdir -p "$OUT"
time $G train pixelcnn --data binarized-mnist --out "$OUT/pixelcnn-bmnist" --epochs 3 $SMALL
$G eval "$OUT/pixelcnn-bmnist"
time $G train pixelcnn --data fashion-mnist --out "$OUT/pixelcnn-fmnist" --epochs 1 $SMALL
$G eval "$OUT/pixelcnn-fmnist"
