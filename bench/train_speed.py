"""Training images/s (eager vs channels_last vs torch.compile) and sampling time (full vs row-cropped).

All variants are measured in one run, interleaved round by round, and reported as medians
and ratios, because this machine is shared and noisy. Not a test: nothing is asserted.

    .venv/bin/python bench/train_speed.py [--model pixelcnn] [--threads 2] [--rounds 5]
"""

import argparse
import json
import statistics
import time

import torch

import genzoo
from genzoo.trainer import _LossOf

p = argparse.ArgumentParser()
p.add_argument("--model", default="pixelcnn")
p.add_argument("--size", type=int, default=28)
p.add_argument("--levels", type=int, default=2)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=5, help="timed steps per round")
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--sample-n", type=int, default=16)
p.add_argument("--skip-compile", action="store_true")
p.add_argument("--json", help="also write the figures here")
args = p.parse_args()
torch.set_num_threads(args.threads)
CONFIG = dict(hidden_channels=32, num_layers=5, head_channels=64)


def fresh_model():
    torch.manual_seed(0)
    return genzoo.models.build(args.model, image_shape=(1, args.size, args.size), levels=args.levels, **CONFIG)


x = torch.randint(0, args.levels, (args.batch, 1, args.size, args.size), dtype=torch.uint8)


def make_variant(kind):
    model = fresh_model()
    step_fn = _LossOf(model)
    if kind == "channels_last":
        model.to(memory_format=torch.channels_last)
    if kind == "compile":
        step_fn = torch.compile(step_fn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run(steps):
        t = time.perf_counter()
        for _ in range(steps):
            loss = step_fn(x, None)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    return run


variants = ["eager", "channels_last"] + ([] if args.skip_compile else ["compile"])
runners, warmup_s = {}, {}
for v in variants:
    runners[v] = make_variant(v)
    warmup_s[v] = runners[v](2)  # compile happens here for "compile"
rates = {v: [] for v in variants}
for r in range(args.rounds):
    for v in variants:
        rates[v].append(args.batch * args.steps / runners[v](args.steps))

# Sampling: row-cropped (row i runs the network on rows 0..i only) vs the full image each time.
model = fresh_model().eval()
sample_s = {"cropped": [], "full": []}
for r in range(2):
    for kind in ("cropped", "full"):
        model.crop_rows_when_sampling = kind == "cropped"
        t = time.perf_counter()
        s = model.sample(args.sample_n, generator=torch.Generator().manual_seed(r))
        sample_s[kind].append(time.perf_counter() - t)
        if kind == "cropped":
            ref = s
        else:
            assert torch.equal(ref, s), "cropped and full sampling must draw the same images"

med = {v: statistics.median(rs) for v, rs in rates.items()}
print(f"# {args.model} {CONFIG}, {args.size}x{args.size}, {args.levels} levels, batch {args.batch}, "
      f"{args.threads} threads, {args.rounds} rounds x {args.steps} steps, torch {torch.__version__}")
print("| training variant | images/s (median) | vs eager | first 2 steps (s) |")
print("| --- | --- | --- | --- |")
for v in variants:
    print(f"| {v} | {med[v]:.0f} | {med[v] / med['eager']:.2f}x | {warmup_s[v]:.1f} |")
sm = {k: statistics.median(v) for k, v in sample_s.items()}
print(f"\n| sampling {args.sample_n} images | seconds (median of 2) | images/s |")
print("| --- | --- | --- |")
for k in ("full", "cropped"):
    print(f"| {k} | {sm[k]:.2f} | {args.sample_n / sm[k]:.2f} |")
print(f"\ncropped sampling speed-up: {sm['full'] / sm['cropped']:.2f}x (identical samples)")
if args.json:
    with open(args.json, "w") as f:
        json.dump({"train_images_per_s": med, "warmup_s": warmup_s, "sample_s": sm, "args": vars(args)}, f, indent=2)
