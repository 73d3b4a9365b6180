"""A trained diffusion model's sampling time and sample quality against the number of steps, in one run.

For each step count N and each solver (ancestral; DDIM; DPM-Solver++(2M)): the seconds to draw 64
images (one process, the stated threads), and with ``--fid M`` the FID of M samples against M
seeded test images in the dataset's feature network (``genzoo eval --fid``'s figures, floor
included). Not a test; run it on a quiet machine. Figures go in docs/RESULTS.md.

    .venv/bin/python bench/diffusion_steps.py RUN [--steps 10,25,50,100,250] [--fid 1000] [--threads 2] \
        [--solvers ancestral,ddim,dpm++]
"""

import argparse
import json
import time

import torch

from genzoo import data, runs
from genzoo.evaluation import quality

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("--steps", default="10,25,50,100,250")
p.add_argument("--n", type=int, default=64)
p.add_argument("--fid", type=int, default=0, metavar="M")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--solvers", default="ancestral,ddim,dpm++")
args = p.parse_args()
torch.set_num_threads(args.threads)
run = runs.open_run(args.run)
model = run.model.eval()
spec = run.spec
if args.fid:
    train, test = data.seen_training_split(spec), data.prepare(spec, "test")[0]
    net, _ = quality.feature_network(spec, train, test, train.levels, data.cache_dir() / "features", print)
rows = []
for steps in [int(s) for s in args.steps.split(",")]:
    for solver in args.solvers.split(","):
        t0 = time.perf_counter()
        model.sample(args.n, generator=torch.Generator().manual_seed(0), steps=steps, solver=solver)
        row = {"steps": steps, "sampler": solver, f"seconds_{args.n}": time.perf_counter() - t0}
        if args.fid:
            q = quality.measure(model, args.fid, net, test, train, seed=0, steps=steps, solver=solver)
            row.update(fid=q["fid"], fid_floor=q["floor"]["fid"], precision=q["precision"], recall=q["recall"])
        rows.append(row)
        print(json.dumps(row), flush=True)
print(f"| steps | sampler | {args.n} images (s) |" + (f" FID ({args.fid}) | precision | recall |" if args.fid else ""))
for r in rows:
    print(f"| {r['steps']} | {r['sampler']} | {r[f'seconds_{args.n}']:.1f} |"
          + (f" {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |" if args.fid else ""))
