#!/usr/bin/env bash
# Glow's one-CPU-hour run beside MADE's runs, ONE thread each (docs/RESULTS.md, "Glow: one CPU hour" and "NADE and MADE";
# the MADE sequence below takes about 1.5 hours on its core):
#  A. Glow on Fashion-MNIST (8-bit) toward the shipped RealNVP (<= 3.258 bits/dim, which had 2 threads alone):
#     defaults (2 scales at 28 x 28, K = 8, 64 channels) with RealNVP's logit preprocessing (--logit-alpha 0.05),
#     batch 64, Adam 1e-3 after 200 warm-up steps, cosine over EPOCHS_GLOW epochs, MIN minutes;
#  B. MADE (500 hidden units) on static binarized MNIST toward Germain et al. 2015's figures, cosine schedules one
#     after the other, each run then scored on the validation split and the test split (full, exact): the
#     validation figure picks the one to quote, as the paper's early stopping did. Raster order without direct
#     connections for EPOCHS_MADE epochs (e.g. "20 50"), then with the authors' direct input-to-output connections
#     (--direct) for EPOCHS_DIRECT (e.g. "20 35"), then --direct with an ensemble of 8 masks for 30 epochs.
#     (2026-11-30: the no-direct and direct runs were made in two sittings, runs/cpu-hour and runs/cpu-hour2,
#     with two direct runs at once on the two cores after Glow had finished.)
# Usage: bash bench/cpu_hour.sh [OUT] [MIN]      (defaults runs/cpu-hour, 56)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cpu-hour}
MIN=${2:-56}
EPOCHS_GLOW=${EPOCHS_GLOW:-7}
EPOCHS_MADE=${EPOCHS_MADE:-20 50}
EPOCHS_DIRECT=${EPOCHS_DIRECT:-20 35}
G=.venv/bin/genzoo
mkdir -p "$OUT"

glow() {
    $G train glow --data fashion-mnist --out "$OUT/glow" --logit-alpha 0.05 --batch-size 64 --lr 1e-3 \
        --warmup-steps 200 --epochs "$EPOCHS_GLOW" --minutes "$MIN" --eval-limit 2000 --checkpoint-minutes 10 --threads 1
    $G eval "$OUT/glow" --json --threads 1 > "$OUT/glow.eval.json"
}

made_run() {  # NAME EPOCHS [options]
    local name=$1 epochs=$2; shift 2
    $G train made --data binarized-mnist --out "$OUT/$name" --hidden-units 500 --batch-size 100 --lr 2e-3 \
        --warmup-steps 200 --epochs "$epochs" --minutes "$MIN" --eval-limit 1000 --checkpoint-minutes 10 --threads 1 "$@"
    for split in valid test; do
        $G eval "$OUT/$name" --split $split --json --threads 1 > "$OUT/$name.$split.json"
    done
}

made() {
    for e in $EPOCHS_MADE; do made_run "made-$e" "$e"; done
    for e in $EPOCHS_DIRECT; do made_run "made-direct-$e" "$e" --direct; done
    made_run made-direct-8m30 30 --direct --num-masks 8
}

glow > "$OUT/glow.log" 2>&1 &
made > "$OUT/made.log" 2>&1 &
wait
tail -n 3 "$OUT"/*.log
cat "$OUT"/*.json
