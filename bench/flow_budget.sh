#!/usr/bin/env bash
# NICE and RealNVP on Fashion-MNIST (8-bit) after a stated CPU budget: test bits/dim (a bound,
# full test set), training images/s, and pictures (samples, interpolations) to look at.
# Usage: bash bench/flow_budget.sh [OUT_DIR] [MINUTES] [THREADS]   (defaults runs/flow-budget, 5, 2). Figures go in docs/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/flow-budget}
MIN=${2:-5}
T=${3:-2}
G=.venv/bin/genzoo
COMMON="--data fashion-mnist --epochs 100 --minutes $MIN --lr 1e-3 --warmup-steps 200 --min-lr-ratio 1.0 --eval-limit 1000 --checkpoint-minutes 0 --threads $T"
mkdir -p "$OUT"
$G train nice --out "$OUT/nice" $COMMON --batch-size 128 --hidden-features 512 --num-hidden 4
$G train realnvp --out "$OUT/realnvp" $COMMON --batch-size 64 --num-scales 2 --hidden-channels 32 --num-blocks 2
for m in nice realnvp; do
    $G eval "$OUT/$m"
    $G sample "$OUT/$m" -n 64 -o "$OUT/$m-samples.png" --temperature 0.7
    $G interpolate "$OUT/$m" -o "$OUT/$m-interpolate.png"
done
