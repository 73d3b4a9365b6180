#!/usr/bin/env bash
# The diffusion model (VDM) after the 4-minute family budget, beside the other families' benches
# (bench/flow_budget.sh, bench/latent.sh, bench/quality.sh): binarized MNIST in nats/image and
# Fashion-MNIST in bits/dim, each the bound on the full test set averaged over 2 times per image
# (with its terms and Monte-Carlo standard error), and FID of N samples (--steps 100, ancestral).
# Usage: bash bench/diffusion_budget.sh [OUT_DIR] [MINUTES] [THREADS] [N]   (defaults runs/diffusion-budget, 4, 2, 1000)
# Figures go in docs/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/diffusion-budget}
MIN=${2:-4}
T=${3:-2}
N=${4:-1000}
G=.venv/bin/genzoo
BUDGET="--epochs 100 --minutes $MIN --batch-size 64 --lr 2e-3 --warmup-steps 200 --min-lr-ratio 1.0 --eval-limit 1000 --checkpoint-minutes 0 --threads $T --channels 16"
mkdir -p "$OUT"
[ -f "$OUT/bmnist/checkpoint.json" ] || $G train diffusion --data binarized-mnist --out "$OUT/bmnist" $BUDGET
[ -f "$OUT/fmnist/checkpoint.json" ] || $G train diffusion --data fashion-mnist --out "$OUT/fmnist" $BUDGET --fourier-features
for m in bmnist fmnist; do
    $G eval "$OUT/$m" --t-samples 2 --fid "$N" --steps 100 --json --threads "$T" | tee "$OUT/$m-eval.json"
    $G sample "$OUT/$m" -n 64 --steps 100 -o "$OUT/$m-samples.png"
done
