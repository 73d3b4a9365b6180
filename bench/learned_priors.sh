#!/usr/bin/env bash
# Learned priors and Glow at a stated CPU budget (docs/RESULTS.md, "Learned priors and Glow").
# Two jobs at once, ONE thread each (one a core, the family bench's conditions):
#  A. VQ-VAE + Gated PixelCNN prior, two stages of MIN/2 minutes each (the VQ-VAE, then the prior on its
#     codes: --data codes:RUN), on static binarized MNIST, then on Fashion-MNIST (8-bit);
#  B. Glow (defaults) and RealNVP (the 4-minute flow bench's widths) on Fashion-MNIST, MIN minutes each.
# Then each run on the full test set (`genzoo eval --json`; the VQ-VAE alone is its uniform-prior bound),
# 64 samples timed, and FID etc. of FID samples (0: none).
# Usage: bash bench/learned_priors.sh [OUT] [MIN]     (defaults runs/learned-priors, 4; FID=1000)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/learned-priors}
MIN=${2:-4}
FID=${FID:-1000}
HALF=$(echo "$MIN / 2" | bc -l)
G=.venv/bin/genzoo
BUDGET=(--epochs 1000 --lr 1e-3 --warmup-steps 200 --min-lr-ratio 1.0 --eval-limit 1000 --checkpoint-minutes 0 --threads 1)
mkdir -p "$OUT"

score() {  # RUN [sample options]: full test set, 64 samples timed, FID
    local run=$1; shift
    $G eval "$run" --json --threads 1 > "$run.eval.json"
    local t0; t0=$(date +%s.%N)
    $G sample "$run" -n 64 -o "$run.samples.png" --seed 0 --threads 1 "$@" > /dev/null
    echo "{\"run\": \"$run\", \"sample_64_s\": $(echo "$(date +%s.%N) - $t0" | bc)}" > "$run.sample.json"
    if [ "$FID" != 0 ]; then $G eval "$run" --fid "$FID" --json --threads 1 > "$run.fid.json"; fi  # at temperature 1
}

vq_pair() {  # NAME DATA
    local name=$1 data=$2
    rm -rf "$OUT/vq-$name" "$OUT/prior-$name"
    $G train vq-vae --data "$data" --out "$OUT/vq-$name" --minutes "$HALF" --batch-size 64 "${BUDGET[@]}" --lr 2e-3
    $G train gated-pixelcnn --data "codes:$OUT/vq-$name" --out "$OUT/prior-$name" --minutes "$HALF" --batch-size 64 \
        "${BUDGET[@]}" --lr 2e-3
    $G eval "$OUT/vq-$name" --json --threads 1 > "$OUT/vq-$name.eval.json"
    score "$OUT/prior-$name"
}

flows() {
    rm -rf "$OUT/glow" "$OUT/realnvp"
    $G train glow --data fashion-mnist --out "$OUT/glow" --minutes "$MIN" --batch-size 64 "${BUDGET[@]}"
    score "$OUT/glow" --temperature 0.7
    $G train realnvp --data fashion-mnist --out "$OUT/realnvp" --minutes "$MIN" --batch-size 64 --num-scales 2 \
        --hidden-channels 32 --num-blocks 2 "${BUDGET[@]}"
    score "$OUT/realnvp" --temperature 0.7
}

(vq_pair bmnist binarized-mnist && vq_pair fmnist fashion-mnist) > "$OUT/vq.log" 2>&1 &
flows > "$OUT/flows.log" 2>&1 &
wait
for f in "$OUT"/*.json; do echo "$(basename "$f"): $(tr -d '\n' < "$f")"; done
