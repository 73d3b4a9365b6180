"""How far each autoregressive sampler is from its floor, in one process.

The floor of a cached sampler is the arithmetic of one full forward pass over the batch (what a perfect cache
does in all); ``genzoo race`` reports sample / floor as "x its floor". For each raster-order model, at the size
the race trains it (its budget recipe for 2-level data, ``genzoo.recipes.budget_recipe``), random weights (the
time of a sampler does not depend on what they learned), 64 images of 1x28x28, binary:

- ``sample``: ``model.sample(64)`` as the race times it (MADE's fused sampler, the others' cached one);
- ``generic``: the family's generic cached loop (a completion with nothing known takes it), where the model has
  its own sampler of whole images (``sample_whole``);
- ``floor``: one pass of ``model.loss`` over the 64 images (warm).

Not a test; run it on a quiet machine.

    .venv/bin/python bench/sampler_floor.py [--models made,nade] [--repeat 3] [--threads 2]
"""

import argparse
import json
import time

import torch

import genzoo
from genzoo import recipes
from genzoo.models.autoregressive.ar_base import AutoregressiveModel

p = argparse.ArgumentParser()
p.add_argument("--models", default=",".join(n for n in genzoo.models.names() if genzoo.models.get(n).raster_order))
p.add_argument("--n", type=int, default=64)
p.add_argument("--repeat", type=int, default=3, help="best of R timings of each")
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)


def best(fn) -> float:
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


rows = []
for name in args.models.split(","):
    options, _, where = recipes.budget_recipe(name, 2)
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(1, 28, 28), levels=2, **options).eval()
    x = torch.randint(0, 2, (args.n, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        model.loss(x)  # warm
        floor = best(lambda: model.loss(x))
        sample = best(lambda: model.sample(args.n, generator=torch.Generator().manual_seed(0)))
        own = type(model).sample_whole is not AutoregressiveModel.sample_whole
        nothing = dict(prefix=torch.zeros_like(x), known=torch.zeros(1, 28, 28, dtype=torch.bool))  # the loop's way
        generic = best(lambda: model.sample(args.n, generator=torch.Generator().manual_seed(0), **nothing)) \
            if own else None
    row = {"model": name, "options": options, "sample_s": round(sample, 3), "floor_s": round(floor, 4),
           "x_floor": round(sample / floor, 1)}
    if generic is not None:
        row.update(generic_s=round(generic, 3), generic_x_floor=round(generic / floor, 1))
    rows.append(row)
    print(json.dumps(row), flush=True)

print(f"\n# {args.n} images of 1x28x28, 2 levels, the race's sizes, random weights, {args.threads} threads, best of "
      f"{args.repeat}, torch {torch.__version__}")
print("| model | sample 64 (s) | floor (s) | x its floor | generic cached loop (s) | its x floor |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['model']} | {r['sample_s']:.3f} | {r['floor_s']:.4f} | {r['x_floor']} | "
          f"{r.get('generic_s', '-')} | {r.get('generic_x_floor', '-')} |")
