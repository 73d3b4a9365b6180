"""Every model on colour MNIST for the same short wall-clock budget.

Trains each of the 11 models through the real CLI on ``colour-mnist`` (3 x 28 x 28, 4 levels a
channel) for ``--minutes`` of wall clock, scores it with ``genzoo eval`` (bits/dim where the
model has a likelihood, MSE for the autoencoders) on the full test set (the Pixel Transformer,
whose 2,352-token sequence makes a full pass slow on a CPU, on a stated seeded subset), and
draws 16 samples (reconstructions for the autoencoders) into bench/out/colour/<model>.png.
Prints one markdown table and writes it as JSON. Not a test: nothing is asserted.

    .venv/bin/python bench/colour.py [--minutes 2] [--threads 2] [--out runs/colour-bench]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# The autoregressive models at the matched ~70-80k parameters of bench/autoregressive.py; the
# flows and latent models at their defaults except RealNVP (the CPU-budget configuration of
# bench/flow_budget.sh). The colour masks take any width.
CONFIGS = {
    "pixelcnn": dict(hidden_channels=32, num_layers=5, head_channels=64),
    "gated-pixelcnn": dict(hidden_channels=28, num_layers=5, head_channels=64, kernel=3),
    "row-lstm": dict(hidden_channels=24, num_layers=3, head_channels=64),
    "diagonal-bilstm": dict(hidden_channels=24, num_layers=3, head_channels=64),
    "pixel-transformer": dict(embed_dim=44, num_layers=3, num_heads=2),
    "autoencoder": {}, "denoising-autoencoder": {}, "sparse-autoencoder": {}, "vae": {}, "nice": {},
    "realnvp": dict(hidden_channels=32, num_blocks=2),
}
EVAL_LIMIT = {"pixel-transformer": 1000}

p = argparse.ArgumentParser()
p.add_argument("--models", default=",".join(CONFIGS))
p.add_argument("--minutes", type=float, default=2.0)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--out", default="runs/colour-bench")
p.add_argument("--pictures", default="bench/out/colour")
p.add_argument("--json", default="bench/out/colour.json")
args = p.parse_args()
out, pictures = Path(args.out), Path(args.pictures)
pictures.mkdir(parents=True, exist_ok=True)


def genzoo(*argv, capture=False):
    cmd = [sys.executable, "-m", "genzoo", *map(str, argv)]
    print("$ genzoo", " ".join(map(str, argv)), flush=True)
    return subprocess.run(cmd, check=True, capture_output=capture, text=True)


rows = []
for name in args.models.split(","):
    run = out / name
    if not (run / "checkpoint.json").exists():
        options = [x for k, v in CONFIGS[name].items() for x in ("--" + k.replace("_", "-"), v)]
        genzoo("train", name, "--data", "colour-mnist", "--out", run, "--epochs", 100, "--minutes", args.minutes,
               "--batch-size", 64, "--lr", "2e-3", "--warmup-steps", 100, "--eval-limit", 500,
               "--checkpoint-minutes", 0, "--threads", args.threads, *options)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    t0 = time.perf_counter()
    score = json.loads(genzoo("eval", run, "--json", "--threads", args.threads, "--limit", EVAL_LIMIT.get(name, 0),
                              capture=True).stdout)
    eval_s = time.perf_counter() - t0
    picture = pictures / f"{name}.png"
    t0 = time.perf_counter()
    if score["likelihood_kind"] == "none":
        genzoo("reconstruct", run, "-n", 8, "-o", picture, "--threads", args.threads)
    else:
        genzoo("sample", run, "-n", 16, "-o", picture, "--threads", args.threads, "--scale", 2)
    rows.append({"model": name, "config": CONFIGS[name], "steps": metrics[-1]["step"],
                 "train_images_per_s": sum(m["images_per_s"] for m in metrics) / len(metrics),
                 "eval": score, "eval_s": eval_s, "picture_s": time.perf_counter() - t0, "picture": str(picture)})
    print(json.dumps(rows[-1]), flush=True)

print(f"\n# colour-mnist (3x28x28, 4 levels), {args.minutes} min of training each, {args.threads} threads")
print("| model | kind | steps | train images/s | test figure | test images | eval (s) | picture |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    e = r["eval"]
    if e["likelihood_kind"] == "none":
        figure = f"MSE {e['mse']:.5f} ({e['psnr_db']:.2f} dB)"
    else:
        bound = "<= " if e["likelihood_kind"] == "bound" else ""
        figure = f"{bound}{e['bits_per_dim']:.4f} bits/dim ({e['nll_nats']:.1f} nats)"
    print(f"| `{r['model']}` | {e['likelihood_kind']} | {r['steps']} | {r['train_images_per_s']:.0f} | {figure} | "
          f"{e['count']}{' (seeded subset)' if 'subset_of' in e else ''} | {r['eval_s']:.0f} | {r['picture']} |")
Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2))
