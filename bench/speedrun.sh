#!/usr/bin/env bash
# The one-CPU-hour record on static binarized MNIST (exact likelihood), issue 17:
# trains the recipe below for at most MINUTES of wall clock on the 2-core CPU box, then scores
# the full 10,000-image test set with `genzoo eval`. Per-epoch test figures (the curve) are on a
# fixed, seeded 2,000-image stratified subset; the final figure is the full test set.
#
#   bash bench/speedrun.sh [OUT_DIR] [MINUTES]      (defaults: runs/speedrun, 56)
#
# The recipe: a Row LSTM (van den Oord et al. 2016, section 3.1) of 3 layers, h = 24 (72k
# parameters), batch 64, Adam lr 2e-3, 200 warm-up steps then cosine to 0 over EPOCHS epochs,
# torch.compile, fp32 (--precision auto: bf16 where the CPU has it natively). EPOCHS is sized so
# the cosine ends near the time budget on an AVX2 2-core box; --minutes stops it regardless.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/speedrun}
MINUTES=${2:-56}
EPOCHS=${EPOCHS:-8}
G=.venv/bin/genzoo
[ -x "$G" ] || make install
start=$(date +%s)
if [ -f "$OUT/run.json" ]; then
    $G train --resume "$OUT"
else
    $G train row-lstm --data binarized-mnist --out "$OUT" --hidden-channels 24 --num-layers 3 --head-channels 64 \
        --batch-size 64 --lr 2e-3 --warmup-steps 200 --epochs "$EPOCHS" --minutes "$MINUTES" --eval-limit 2000 \
        --threads 2 --compile
fi
$G eval "$OUT" --json --threads 2 | tee "$OUT/eval-full-test.json"
echo "speedrun: $(( $(date +%s) - start )) s wall clock, training and the full-test-set evaluation together"
lscpu | grep -o 'avx512_bf16\|amx_bf16' | sort -u | sed 's/^/speedrun: cpu has /' || echo "speedrun: cpu has no native bf16"
