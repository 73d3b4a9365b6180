#!/usr/bin/env bash
# The one-CPU-hour record on static binarized MNIST (exact likelihood): trains the shipped Row
# LSTM's recipe (genzoo/recipes.py: row-lstm-binarized-mnist, through `genzoo reproduce`) for at
# most MINUTES of wall clock on the 2-core CPU box, then scores the full 10,000-image test set with
# `genzoo eval`. Per-epoch test figures (the curve) are on a fixed, seeded 2,000-image stratified
# subset; the final figure is the full test set.
#
#   bash bench/speedrun.sh [OUT_DIR] [MINUTES]      (defaults: runs/speedrun, the recipe's 56)
#   EPOCHS=9 bash bench/speedrun.sh                 (the cosine over 9 epochs instead of the recipe's 8)
#
# The recipe itself (model, options, budget) lives in genzoo/recipes.py and nowhere else:
#   .venv/bin/genzoo reproduce row-lstm-binarized-mnist --print
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/speedrun}
G=.venv/bin/genzoo
[ -x "$G" ] || make install
start=$(date +%s)
if [ -f "$OUT/run.json" ]; then
    $G train --resume "$OUT"
else
    $G reproduce row-lstm-binarized-mnist --out "$OUT" --no-eval ${2:+--minutes "$2"} ${EPOCHS:+--epochs "$EPOCHS"}
fi
$G eval "$OUT" --json --threads 2 | tee "$OUT/eval-full-test.json"
echo "speedrun: $(( $(date +%s) - start )) s wall clock, training and the full-test-set evaluation together"
lscpu | grep -o 'avx512_bf16\|amx_bf16' | sort -u | sed 's/^/speedrun: cpu has /' || echo "speedrun: cpu has no native bf16"
