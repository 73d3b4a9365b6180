"""Problem 2, measured: why are VAE samples blurry?

Puts four kinds of image side by side, one row of each in a picture, and measures how sharp
each is: real test images, the VAE's decoder means E[x|z] (z from the prior), the VAE's true
samples x ~ p(x|z), and samples of an exact autoregressive model (PixelCNN). Sharpness is
the mean gradient magnitude sqrt(dx^2 + dy^2) of forward differences on the [0, 1] scale,
and, to tell detail from noise, the same statistic after a 2x2 average (noise averages out,
edges do not). Not a test: nothing is asserted.

    .venv/bin/python bench/problem2.py --vae RUN --exact RUN [-n 32] [-o problem2.png] [--json F]
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

import genzoo
from genzoo import data, images

p = argparse.ArgumentParser()
p.add_argument("--vae", required=True, help="a VAE run folder")
p.add_argument("--exact", required=True, help="an autoregressive run folder on the same data")
p.add_argument("-n", type=int, default=32)
p.add_argument("-o", "--output", default="problem2.png")
p.add_argument("--json")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)


def sharpness(x: torch.Tensor, levels: int) -> dict:
    """Mean gradient magnitude on [0, 1], at full and at half resolution. x: uint8 [N, C, H, W]."""
    u = x.double() / (levels - 1)

    def grad_mag(v):
        dx, dy = v[..., :-1, 1:] - v[..., :-1, :-1], v[..., 1:, :-1] - v[..., :-1, :-1]
        return (dx**2 + dy**2).sqrt().mean().item()

    return {"gradient": grad_mag(u), "gradient_2x2_mean": grad_mag(F.avg_pool2d(u, 2))}


vae, exact = genzoo.load(args.vae), genzoo.load(args.exact)
test = data.load("fashion-mnist", "test")
levels = vae.levels
assert exact.levels == levels == test.levels, "the two runs and the data must share the level count"
g = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731
rows, table = {}, {}
rows["real test images"] = test.images[: args.n]
rows["VAE decoder mean"] = vae.sample(args.n, generator=g(), mean=True)
rows["VAE true sample"] = vae.sample(args.n, generator=g())
t0 = time.perf_counter()
rows[f"{exact.name} sample"] = exact.sample(args.n, generator=g())
exact_seconds = time.perf_counter() - t0
print("| images | mean gradient magnitude | after 2x2 averaging |\n| --- | --- | --- |")
for name, x in rows.items():
    table[name] = sharpness(x, levels)
    print(f"| {name} | {table[name]['gradient']:.4f} | {table[name]['gradient_2x2_mean']:.4f} |")
print(f"({args.n} images each; {exact.name} sampling took {exact_seconds:.1f} s, cached)")
pic = torch.cat(list(rows.values()))  # one row per kind, in the order of the table
images.save_png(images.grid(pic, levels, nrow=args.n, scale=2), args.output)
print(f"wrote {args.output}: rows top to bottom = {', '.join(rows)}")
if args.json:
    with open(args.json, "w") as f:
        json.dump({"n": args.n, "sharpness": table, "exact_model": exact.name, "exact_sampling_seconds": exact_seconds}, f, indent=1)
