"""Why are VAE samples blurry? Measured

Puts four kinds of image side by side, one row of each in a picture, and measures how sharp
each is: real test images, the VAE's decoder means E[x|z] (z from the prior), the VAE's true
samples x ~ p(x|z), and samples of an exact autoregressive model (PixelCNN). Sharpness is
the mean gradient magnitude sqrt(dx^2 + dy^2) of forward differences on the [0, 1] scale,
and, to tell detail from noise, the same statistic after a 2x2 average (noise averages out,
edges do not). With ``--fid N`` it also measures N images of each kind (and of a flow with
``--flow RUN``) in the dataset's feature network, as ``genzoo eval --fid`` does: FID, KID,
precision, recall and the distance to the nearest training image, against N seeded test
images, with N other test images as the floor. Not a test: nothing is asserted.

    .venv/bin/python bench/problem2.py --vae RUN --exact RUN [--flow RUN] [-n 32] [--fid 1000] \
        [-o problem2.png] [--json F]
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

import genzoo
from genzoo import data, grids, runs
from genzoo.evaluation import quality

p = argparse.ArgumentParser()
p.add_argument("--vae", required=True, help="a VAE run folder")
p.add_argument("--exact", required=True, help="an autoregressive run folder on the same data")
p.add_argument("--flow", help="a flow run folder on the same data (quality figures only)")
p.add_argument("--fid", type=int, default=0, help="images of each kind for the quality figures; 0 = none")
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
grids.save_png(grids.grid(pic, levels, nrow=args.n, scale=2), args.output)
print(f"wrote {args.output}: rows top to bottom = {', '.join(rows)}")


figures = {}
if args.fid:
    spec = runs.open_run(args.vae).spec
    train, _, _ = data.prepare(spec, "train")
    net, record = quality.feature_network(spec, train, test, levels, data.cache_dir() / "features", print)
    reference, held_out = quality.reference_split(test, args.fid)
    train_features = quality.features(net, train.images)
    kinds = {"held-out test images (the floor)": lambda: held_out,
             "VAE decoder mean": lambda: quality.draw(vae, args.fid, g(), mean=True),
             "VAE true sample": lambda: quality.draw(vae, args.fid, g()),
             f"{exact.name} sample": lambda: quality.draw(exact, args.fid, g())}
    if args.flow:
        flow = genzoo.load(args.flow)
        kinds[f"{flow.name} sample"] = lambda: quality.draw(flow, args.fid, g())
    print(f"\n{len(reference)} reference test images; feature network: {record}")
    print("| images | FID | KID | precision | recall | nearest training image | sharpness |\n| --- | --- | --- | --- | "
          "--- | --- | --- |")
    for name, make in kinds.items():
        x = make()
        figures[name] = {**quality.figures(net, reference, x, train_features), **sharpness(x, levels)}
        f = figures[name]
        print(f"| {name} | {f['fid']:.2f} | {f['kid']:.4f} | {f['precision']:.3f} | {f['recall']:.3f} | "
              f"{f['nn_train_distance']:.3f} | {f['gradient']:.4f} |", flush=True)
if args.json:
    with open(args.json, "w") as f:
        json.dump({"n": args.n, "sharpness": table, "exact_model": exact.name, "exact_sampling_seconds": exact_seconds,
                   "quality_n": args.fid, "quality": figures}, f, indent=1)
