"""Cached against naive sampling of every autoregressive model at its defaults, in one process.

Random weights (seed 0), 28 x 28 binary images, 2 threads: the time of a sampler does not depend
on what the weights learned. For each model: the cached sampler's seconds, the naive sampler's
(one full pass per sub-pixel on rows 0..i), the ratio, and how many of the images both drew
alike. ``--profile MODEL`` adds the operators that MODEL's cached sampler spends its time in.
Not a test; run it on a quiet machine.

    .venv/bin/python bench/sampling.py [--n 32] [--models pixelcnn,
                                                 pixel-transformer] [--skip-naive] [--profile pixelcnn]
"""

import argparse
import json
import time

import torch

import genzoo

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=32)
p.add_argument("--size", type=int, default=28)
p.add_argument("--models", default="pixelcnn,gated-pixelcnn,row-lstm,diagonal-bilstm,pixel-transformer")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--skip-naive", action="store_true")
p.add_argument("--profile", metavar="MODEL", help="also profile one cached sampling of MODEL")
args = p.parse_args()
torch.set_num_threads(args.threads)


def build(name):
    torch.manual_seed(0)
    return genzoo.models.build(name, image_shape=(1, args.size, args.size), levels=2).eval()


def timed(model, **options):
    t0 = time.perf_counter()
    x = model.sample(args.n, generator=torch.Generator().manual_seed(0), **options)
    return time.perf_counter() - t0, x


rows = []
for name in args.models.split(","):
    model = build(name)
    cached_s, cached = timed(model)
    row = {"model": name, "n": args.n, "cached_s": round(cached_s, 2),
           "ms_per_step": round(1000 * cached_s / args.size**2, 2)}
    if not args.skip_naive:
        naive_s, naive = timed(model, naive=True)
        row.update(naive_s=round(naive_s, 1), speedup=round(naive_s / cached_s, 1),
                   identical=int((cached == naive).flatten(1).all(1).sum()))
    rows.append(row)
    print(json.dumps(row), flush=True)

print(f"\n# {args.n} images of 1x{args.size}x{args.size}, 2 levels, defaults, random weights, {args.threads} threads, "
      f"torch {torch.__version__}")
print("| model | cached (s) | ms per pixel | naive (s) | naive / cached | identical |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['model']} | {r['cached_s']:.2f} | {r['ms_per_step']:.2f} | {r.get('naive_s', '-')} | "
          f"{str(r['speedup']) + 'x' if 'speedup' in r else '-'} | {r.get('identical', '-')}/{args.n} |")

if args.profile:
    from torch.profiler import ProfilerActivity, profile

    model = build(args.profile)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.sample(args.n, generator=torch.Generator().manual_seed(0))
    print(f"\n# where one cached {args.profile} sampling of {args.n} images spends its time (torch.profiler, self CPU)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
