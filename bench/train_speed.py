"""Training speed and precision: eager / channels_last / compile / bf16 / compile+bf16, in one run.

Prints, for each variant: images/s (median over interleaved rounds, because this machine is
shared and noisy), the ratio to eager fp32, and the achieved GFLOP/s (forward + backward
FLOPs of one step counted by ``torch.utils.flop_counter``) next to the fp32 and bf16 matrix
product rates this bench measures on the same machine. Then, for the same number of steps
from the same seed, the test NLL of fp32 and bf16 training side by side (digits), and the
sampling time with and without row cropping. Not a test: nothing is asserted.

    .venv/bin/python bench/train_speed.py [--config default|small] [--threads 2] [--rounds 3]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import genzoo
from genzoo.training.trainer import TrainConfig, Trainer, _LossOf, autocast

p = argparse.ArgumentParser()
p.add_argument("--model", default="pixelcnn")
p.add_argument("--config", choices=("default", "small"), default="default",
               help="default: the model's own defaults; small: hidden 32, 5 layers, head 64")
p.add_argument("--size", type=int, default=28)
p.add_argument("--levels", type=int, default=2)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=3, help="timed steps per round")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--variants", default="eager,channels_last,compile,bf16,compile+bf16")
p.add_argument("--nll-epochs", type=int, default=2, help="epochs of digits for the fp32-vs-bf16 NLL; 0 = skip")
p.add_argument("--sample-n", type=int, default=16, help="images for the sampling comparison; 0 = skip")
p.add_argument("--json", help="also write the figures here")
args = p.parse_args()
torch.set_num_threads(args.threads)
CONFIG = {} if args.config == "default" else dict(hidden_channels=32, num_layers=5, head_channels=64)
cpu = torch.device("cpu")


def fresh_model(image_shape=(1, args.size, args.size), levels=args.levels):
    torch.manual_seed(0)
    return genzoo.models.build(args.model, image_shape=image_shape, levels=levels, **CONFIG)


def matmul_gflops(dtype, n=1024, seconds=2.0):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


x = torch.randint(0, args.levels, (args.batch, 1, args.size, args.size), dtype=torch.uint8)


def step_flops():
    model = fresh_model()
    with FlopCounterMode(display=False) as counter:
        model.loss(x)["loss"].backward()
    return counter.get_total_flops()


def make_variant(kind):
    model = fresh_model()
    step_fn = _LossOf(model)
    precision = "bf16" if "bf16" in kind else "fp32"
    if kind == "channels_last":
        model.to(memory_format=torch.channels_last)
    if "compile" in kind:
        step_fn = torch.compile(step_fn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run(steps):
        t = time.perf_counter()
        for _ in range(steps):
            with autocast(cpu, precision):
                loss = step_fn(x, None)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    return run


def nll_side_by_side(epochs):
    """Test NLL after the same steps from the same seed, fp32 vs bf16 (digits, the bench's model config)."""
    train, test = genzoo.data.load("digits", "train"), genzoo.data.load("digits", "test")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            model = fresh_model((1, 8, 8), 17)
            cfg = TrainConfig(epochs=epochs, batch_size=100, lr=2e-3, warmup_steps=5, precision=precision)
            trainer = Trainer(model, (train.images, train.labels), (test.images, test.labels), cfg,
                              Path(tmp) / precision, log=lambda *a: None)
            t0 = time.perf_counter()
            rec = trainer.fit()[-1]
            out[precision] = {"test_nll": rec["test_nll"], "test_bpd": rec["test_bpd"], "steps": rec["step"],
                              "seconds": time.perf_counter() - t0}
    return out


variants = args.variants.split(",")
rates_gflops = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
flops = step_flops()
runners, warmup_s = {}, {}
for v in variants:
    runners[v] = make_variant(v)
    warmup_s[v] = runners[v](2)  # compilation happens here for the compiled variants
rates = {v: [] for v in variants}
for r in range(args.rounds):
    for v in variants:
        rates[v].append(args.batch * args.steps / runners[v](args.steps))
med = {v: statistics.median(rs) for v, rs in rates.items()}
nparams = sum(p.numel() for p in fresh_model().parameters())

print(f"# {args.model} ({args.config} config, {nparams:,} parameters), {args.size}x{args.size}, {args.levels} levels, "
      f"batch {args.batch}, {args.threads} threads, {args.rounds} rounds x {args.steps} steps, torch "
      f"{torch.__version__}, "
      f"CPU capability {torch.backends.cpu.get_cpu_capability()}, AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}, "
      f"AMX {torch.cpu._is_amx_tile_supported()}")
print(f"# measured matmul (1024^2, {args.threads} threads): fp32 {rates_gflops['fp32']:.1f} GFLOP/s, "
      f"bf16 {rates_gflops['bf16']:.1f} GFLOP/s; one training step = {flops / 1e9:.2f} GFLOP (forward + backward)")
print("| training variant | images/s (median) | vs eager fp32 | GFLOP/s | of its dtype's matmul rate | first 2 steps "
      "(s) |")
print("| --- | --- | --- | --- | --- | --- |")
achieved = {}
for v in variants:
    achieved[v] = flops * med[v] / args.batch / 1e9
    peak = rates_gflops["bf16" if "bf16" in v else "fp32"]
    print(f"| {v} | {med[v]:.1f} | {med[v] / med[variants[0]]:.2f}x | {achieved[v]:.1f} "
          f"| {100 * achieved[v] / peak:.0f}% "
          f"| {warmup_s[v]:.1f} |")

nll = nll_side_by_side(args.nll_epochs) if args.nll_epochs else {}
if nll:
    f, b = nll["fp32"], nll["bf16"]
    print(f"\n| digits, {f['steps']} steps, same seed | test NLL (nats, exact, fp32 eval) | bits/dim | wall (s) |")
    print("| --- | --- | --- | --- |")
    for k in ("fp32", "bf16"):
        print(f"| {k} training | {nll[k]['test_nll']:.3f} | {nll[k]['test_bpd']:.4f} | {nll[k]['seconds']:.1f} |")
    print(f"bf16 - fp32: {b['test_nll'] - f['test_nll']:+.3f} nats ({100 * (b['test_nll'] / f['test_nll'] - 1):+.2f}%)")

sm = {}
if args.sample_n:
    # Sampling: row-cropped (row i runs the network on rows 0..i only) vs the full image each time.
    model = fresh_model().eval()
    sample_s = {"cropped": [], "full": []}
    for kind in ("cropped", "full"):
        model.crop_rows_when_sampling = kind == "cropped"
        t = time.perf_counter()
        s = model.sample(args.sample_n, generator=torch.Generator().manual_seed(0))
        sample_s[kind] = time.perf_counter() - t
        if kind == "cropped":
            ref = s
        else:
            assert torch.equal(ref, s), "cropped and full sampling must draw the same images"
    sm = sample_s
    print(f"\n| sampling {args.sample_n} images | seconds | images/s |")
    print("| --- | --- | --- |")
    for k in ("full", "cropped"):
        print(f"| {k} | {sm[k]:.2f} | {args.sample_n / sm[k]:.2f} |")

if args.json:
    with open(args.json, "w") as fh:
        json.dump({"train_images_per_s": med, "gflops": achieved, "matmul_gflops": rates_gflops, "step_flops": flops,
                   "warmup_s": warmup_s, "nll": nll, "sample_s": sm, "args": vars(args)}, fh, indent=2)
