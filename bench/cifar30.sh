#!/usr/bin/env bash
# 8-bit colour after a CPU budget: the issue's CIFAR-10 comparison. Each model at its defaults trains for
# MINUTES (default 30) on the real CIFAR-10 subset (3,805 training / 761 test images in the official binary
# records), batch 32, lr 2e-3 after 20 warm-up steps, cosine over the epochs given below (sized so that the
# cosine ends near the budget at one thread), ONE thread, two models at a time (one a core: the pair shares
# identical conditions); then the exact bits/dim on all 761 test images and 64 samples (timed).
#
#   bash bench/cifar30.sh [OUT] [PAIR]     PAIR: pixelcnn (softmax vs mixture PixelCNN) or frontier
#                                          (PixelCNN++ and PixelSNAIL); default both, one pair after the other
# Figures go in docs/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cifar30}
PAIR=${2:-all}
MINUTES=${MINUTES:-30}
DATA_DIR=${DATA_DIR:-../shared/data/cifar10-subset}
G=.venv/bin/genzoo
COMMON=(--data cifar10 --data-dir "$DATA_DIR" --batch-size 32 --lr 2e-3 --warmup-steps 20 --minutes "$MINUTES" --threads 1)
mkdir -p "$OUT"

one() {  # name model epochs [options...]
    local name=$1 model=$2 epochs=$3; shift 3
    rm -rf "${OUT:?}/$name"
    $G train "$model" "${COMMON[@]}" --epochs "$epochs" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
    $G eval "$OUT/$name" --threads 1 --json --data-dir "$DATA_DIR" > "$OUT/$name.eval.json" 2>> "$OUT/$name.log"
    local t0; t0=$(date +%s.%N)
    $G sample "$OUT/$name" -n 64 -o "$OUT/$name.samples.png" --seed 0 --threads 1 >> "$OUT/$name.log" 2>&1
    echo "sample 64: $(echo "$(date +%s.%N) - $t0" | bc) s" >> "$OUT/$name.log"
}

if [ "$PAIR" = all ] || [ "$PAIR" = pixelcnn ]; then
    one pixelcnn-softmax pixelcnn 4 --output softmax &
    one pixelcnn-mixture pixelcnn 5 --output mixture &
    wait
fi
if [ "$PAIR" = all ] || [ "$PAIR" = frontier ]; then
    one pixelcnn-pp pixelcnn-pp 4 &
    one pixelsnail pixelsnail 4 &
    wait
fi
for f in "$OUT"/*.eval.json; do echo "$(basename "$f" .eval.json) $(cat "$f")"; done
