#!/usr/bin/env bash
# Two one-CPU-hour jobs at once, ONE thread each (docs/RESULTS.md, "Glow and MADE: one CPU hour"):
#  A. Glow on Fashion-MNIST (8-bit) toward the shipped RealNVP (<= 3.258 bits/dim, which had 2 threads alone):
#     defaults (2 scales at 28 x 28, K = 8, 64 channels) with RealNVP's logit preprocessing (--logit-alpha 0.05),
#     batch 64, Adam 1e-3 after 200 warm-up steps, cosine over EPOCHS_GLOW epochs, MIN minutes;
#  B. MADE (500 hidden units, one mask) on static binarized MNIST toward Germain et al. 2015's one-mask figure:
#     three cosine schedules one after the other (EPOCHS_MADE, e.g. "20 50 100"), each run then scored on the
#     validation split and the test split (full, exact): the validation figure picks the one to quote, as the
#     paper's early stopping did.
# Usage: bash bench/cpu_hour.sh [OUT] [MIN]      (defaults runs/cpu-hour, 56)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cpu-hour}
MIN=${2:-56}
EPOCHS_GLOW=${EPOCHS_GLOW:-7}
EPOCHS_MADE=${EPOCHS_MADE:-20 50 100}
G=.venv/bin/genzoo
mkdir -p "$OUT"

glow() {
    $G train glow --data fashion-mnist --out "$OUT/glow" --logit-alpha 0.05 --batch-size 64 --lr 1e-3 \
        --warmup-steps 200 --epochs "$EPOCHS_GLOW" --minutes "$MIN" --eval-limit 2000 --checkpoint-minutes 10 --threads 1
    $G eval "$OUT/glow" --json --threads 1 > "$OUT/glow.eval.json"
}

made() {
    for e in $EPOCHS_MADE; do
        $G train made --data binarized-mnist --out "$OUT/made-$e" --hidden-units 500 --batch-size 100 --lr 2e-3 \
            --warmup-steps 200 --epochs "$e" --minutes "$MIN" --eval-limit 1000 --checkpoint-minutes 10 --threads 1
        for split in valid test; do
            $G eval "$OUT/made-$e" --split $split --json --threads 1 > "$OUT/made-$e.$split.json"
        done
    done
}

glow > "$OUT/glow.log" 2>&1 &
made > "$OUT/made.log" 2>&1 &
wait
tail -n 3 "$OUT"/*.log
cat "$OUT"/*.json
