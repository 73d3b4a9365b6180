"""Every registered model at its defaults on an accelerator: one bf16 training step, test NLL in fp32, and
(for the autoregressive ones) cached against naive sampling of the same images, on grey 28x28 (2 levels)
and colour 16x16 (256 levels: naive sampling of 32x32 at the defaults would not fit a short lease). A device
check for the lent GPU, one JSON line per (model, shape):

    PYTHONPATH=src python3 bench/gpu_models.py [--device cuda] [--n 4] [--models a,b]

Random weights, random images: this checks that each model runs on the device and that its samplers
agree there, not what it learns.
"""
import argparse
import json
import time
import traceback

import torch

import genzoo.models
from genzoo.models.autoregressive.ar_base import AutoregressiveModel
from genzoo.training.precision import autocast

SHAPES = [((1, 28, 28), 2), ((3, 16, 16), 256)]


def check(name, shape, levels, device, n):
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=shape, levels=levels).to(device)
    x = torch.randint(0, levels, (16, *shape), dtype=torch.uint8, device=device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    t = time.perf_counter()
    with autocast(torch.device(device), "bf16"):
        loss = model.loss(x)["loss"]
    loss.backward()
    opt.step()
    torch.cuda.synchronize() if device == "cuda" else None
    out = {"model": name, "shape": list(shape), "levels": levels, "bf16_loss": float(loss.detach()),
           "step_s": round(time.perf_counter() - t, 3)}
    model.eval()
    with torch.no_grad():
        out["fp32_nll_nats"] = float(model.log_prob(x).neg().mean())
    if isinstance(model, AutoregressiveModel):
        samples = []
        for naive in (False, True):
            t = time.perf_counter()
            samples.append(model.sample(n, generator=torch.Generator().manual_seed(1), naive=naive))
            out["naive_s" if naive else "cached_s"] = round(time.perf_counter() - t, 2)
        out["cached_equals_naive"] = f"{int((samples[0] == samples[1]).flatten(1).all(1).sum())}/{n}"
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--models", default="")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # cached == naive is compared in true fp32
    torch.backends.cudnn.allow_tf32 = False
    names = a.models.split(",") if a.models else genzoo.models.names()
    for name in names:
        for shape, levels in SHAPES:
            try:
                rec = check(name, shape, levels, a.device, a.n)
            except Exception as e:  # one model's failure must not hide the others'
                rec = {"model": name, "shape": list(shape), "levels": levels, "error": f"{type(e).__name__}: {e}",
                       "where": traceback.format_exc().splitlines()[-3].strip()}
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
