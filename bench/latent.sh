#!/usr/bin/env bash
# The latent family after a stated CPU budget, through the real CLI. Figures go in docs/RESULTS.md.
#  1. VAE on static binarized MNIST: test NLL as the IWAE bound with K = 5000 on the full test set
#     (published: VAE <= 86.76 nats, Burda et al. 2016; pytorch-generative 86.77).
#  2. Fashion-MNIST: plain, overcomplete, denoising and sparse autoencoders and a VAE at the same
#     budget; reconstruction MSE/PSNR on clean and on corrupted test images; linear probes on
#     their codes next to raw pixels, PCA and a random projection; and why VAE samples
#     are blurry, with bench/problem2.py against an exact autoregressive model (PixelCNN).
# Usage: bash bench/latent.sh [OUT_DIR] [MINUTES] [THREADS]   (defaults runs/latent-bench, 4, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/latent-bench}
MIN=${2:-4}
T=${3:-2}
G=.venv/bin/genzoo
PROBE_N=20000  # training images the probes fit on (the test split is always whole)
BUDGET="--epochs 1000 --minutes $MIN --lr 1e-3 --warmup-steps 200 --min-lr-ratio 1.0 --eval-limit 1000 --checkpoint-minutes 0 --threads $T"
mkdir -p "$OUT"
train() {  # NAME MODEL [options]: train unless the run is already there
    local name=$1; shift
    [ -f "$OUT/$name/checkpoint.json" ] || $G train "$@" --out "$OUT/$name" $BUDGET
}

echo "== 1. VAE, static binarized MNIST, IWAE K = 5000"
train vae-bmnist vae --data binarized-mnist --batch-size 100 --latent-dim 50 --width 500
$G eval "$OUT/vae-bmnist" --threads "$T"
time $G eval "$OUT/vae-bmnist" --iwae-k 5000 --threads "$T"

echo "== 2. Fashion-MNIST"
AE="--data fashion-mnist --batch-size 100 --architecture mlp --width 512"
train ae autoencoder $AE --latent-dim 32
train overcomplete autoencoder $AE --latent-dim 1024
train denoising denoising-autoencoder $AE --latent-dim 32 --corruption gaussian --noise-level 0.3
train sparse sparse-autoencoder $AE --latent-dim 32 --l1 0.1
train vae-fmnist vae $AE --latent-dim 32 --decoder-likelihood logistic
train pixelcnn-fmnist pixelcnn --data fashion-mnist --batch-size 64 --hidden-channels 32 --num-layers 5 --head-channels 64
for m in ae overcomplete denoising sparse; do
    echo "-- $m"
    $G eval "$OUT/$m" --threads "$T"
    $G eval "$OUT/$m" --corruption gaussian --noise-level 0.3 --threads "$T"
    $G reconstruct "$OUT/$m" -n 16 -o "$OUT/$m-reconstruct.png"
done
$G eval "$OUT/vae-fmnist" --threads "$T"
$G eval "$OUT/pixelcnn-fmnist" --threads "$T"
for m in ae overcomplete denoising sparse vae-fmnist; do
    echo "-- probe $m"
    $G probe "$OUT/$m" --limit $PROBE_N --json --threads "$T" | tee "$OUT/$m-probe.json"
done
.venv/bin/python bench/problem2.py --vae "$OUT/vae-fmnist" --exact "$OUT/pixelcnn-fmnist" -n 32 \
    -o "$OUT/problem2.png" --json "$OUT/problem2.json" --threads "$T"
