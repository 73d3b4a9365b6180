"""Softmax against the discretized logistic mixture output, in one process: training and evaluation
images/s of each autoregressive model on 8-bit colour images (CIFAR-10's 3 x 32 x 32, random levels:
the speed does not depend on them), interleaved rounds (this machine is noisy), the median of each.
The parameters of each output layer too. Not a test. Figures go in docs/RESULTS.md.

    .venv/bin/python bench/mixture_speed.py [--models pixelcnn,gated-pixelcnn] [--config small|default]
        [--batch 32] [--rounds 3] [--threads 2]
"""

import argparse
import statistics
import time

import torch

import genzoo

p = argparse.ArgumentParser()
p.add_argument("--models", default="pixelcnn")
p.add_argument("--config", choices=("small", "default"), default="small",
               help="small: the 4-minute bench's widths (hidden 32, 5 layers, head 64 for PixelCNN); default: the "
                    "model's")
p.add_argument("--size", type=int, default=32)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--mixtures", type=int, default=10)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
SMALL = {"pixelcnn": dict(hidden_channels=32, num_layers=5, head_channels=64),
         "gated-pixelcnn": dict(hidden_channels=32, num_layers=5, head_channels=64),
         "pixel-transformer": dict(embed_dim=52, num_layers=3, num_heads=1, mlp_ratio=2)}


def build(name, output):
    torch.manual_seed(0)
    options = SMALL.get(name, {}) if args.config == "small" else {}
    extra = {"mixtures": args.mixtures} if output == "mixture" else {}
    return genzoo.models.build(name, image_shape=(3, args.size, args.size), levels=256, output=output, **options,
                               **extra)


def train_rate(model, opt, x):
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        model.loss(x)["loss"].backward()
        opt.step()
    return args.steps * len(x) / (time.perf_counter() - t0)


@torch.no_grad()
def eval_rate(model, x):
    t0 = time.perf_counter()
    model.loss(x)
    return len(x) / (time.perf_counter() - t0)


x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
for name in args.models.split(","):
    models = {o: build(name, o) for o in ("softmax", "mixture")}
    opts = {o: torch.optim.Adam(m.parameters(), 1e-3) for o, m in models.items()}
    rates = {o: {"train": [], "eval": []} for o in models}
    for o, m in models.items():  # warm-up
        train_rate(m, opts[o], x)
    for _ in range(args.rounds):
        for o, m in models.items():
            rates[o]["train"].append(train_rate(m, opts[o], x))
            rates[o]["eval"].append(eval_rate(m.eval(), x))
            m.train()
    for o, m in models.items():
        params = sum(q.numel() for q in m.parameters())
        tr, ev = statistics.median(rates[o]["train"]), statistics.median(rates[o]["eval"])
        print(f"| {name} | {o} | {params:,} | {tr:.1f} | {ev:.1f} |", flush=True)
