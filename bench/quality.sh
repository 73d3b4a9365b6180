#!/usr/bin/env bash
# Sample quality beside likelihood on Fashion-MNIST: the sampling models of the
# 4-minute benches (bench/flow_budget.sh, bench/latent.sh: same recipes), each scored on the
# full test set and with `genzoo eval --fid N`; then why VAE samples are blurry, with numbers (bench/problem2.py
# --fid N: VAE decoder means vs VAE samples vs PixelCNN vs RealNVP, with the held-out floor).
# Binarized MNIST's models are in bench/autoregressive.py --fid N. Figures go in docs/RESULTS.md.
# Usage: bash bench/quality.sh [OUT_DIR] [MINUTES] [THREADS] [N]   (defaults runs/quality, 4, 2, 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quality}
MIN=${2:-4}
T=${3:-2}
N=${4:-1000}
G=.venv/bin/genzoo
BUDGET="--data fashion-mnist --minutes $MIN --lr 1e-3 --warmup-steps 200 --min-lr-ratio 1.0 --eval-limit 1000 --checkpoint-minutes 0 --threads $T"
mkdir -p "$OUT"
train() {  # NAME MODEL [options]: train unless the run is already there
    local name=$1; shift
    [ -f "$OUT/$name/checkpoint.json" ] || $G train "$@" --out "$OUT/$name" $BUDGET
}
train nice nice --epochs 100 --batch-size 128 --hidden-features 512 --num-hidden 4
train realnvp realnvp --epochs 100 --batch-size 64 --num-scales 2 --hidden-channels 32 --num-blocks 2
train vae vae --epochs 1000 --batch-size 100 --architecture mlp --width 512 --latent-dim 32 --decoder-likelihood logistic
train pixelcnn pixelcnn --epochs 100 --batch-size 64 --hidden-channels 32 --num-layers 5 --head-channels 64
for m in nice realnvp vae pixelcnn; do
    $G eval "$OUT/$m" --fid "$N" --json --threads "$T" | tee "$OUT/$m-eval.json"
done
.venv/bin/python bench/problem2.py --vae "$OUT/vae" --exact "$OUT/pixelcnn" --flow "$OUT/realnvp" -n 32 --fid "$N" \
    -o "$OUT/problem2.png" --json "$OUT/problem2.json" --threads "$T"
