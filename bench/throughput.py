"""Training throughput of candidate configurations on 28x28 images (binary; 8-bit for the flows),
eager and compiled, in one process (what chose the speedrun's model and the shipped RealNVP's
space-to-depth). Not a test; run it on a quiet machine.

    .venv/bin/python bench/throughput.py [NAME ...]        COMPILE=1 to time torch.compile too; B=64 the batch
"""

import os
import sys
import time

import torch

import genzoo
from genzoo.training.trainer import _LossOf

CONFIGS = {
    "row16x7": ("row-lstm", dict(hidden_channels=16, num_layers=7, head_channels=64)),
    "row24x3": ("row-lstm", dict(hidden_channels=24, num_layers=3, head_channels=64)),
    "row32x4": ("row-lstm", dict(hidden_channels=32, num_layers=4, head_channels=64)),
    "row48x3": ("row-lstm", dict(hidden_channels=48, num_layers=3, head_channels=96)),
    "pcnn32x5": ("pixelcnn", dict(hidden_channels=32, num_layers=5, head_channels=64)),
    "pcnn48x8": ("pixelcnn", dict(hidden_channels=48, num_layers=8, head_channels=128)),
    "gated32x8": ("gated-pixelcnn", dict(hidden_channels=32, num_layers=8, head_channels=64)),
    "realnvp32x2": ("realnvp", dict(hidden_channels=32, num_blocks=2, num_scales=2)),
    "realnvp32x2-s2d": ("realnvp", dict(hidden_channels=32, num_blocks=2, num_scales=2, space_to_depth=True)),
    "realnvp64x2-s2d": ("realnvp", dict(hidden_channels=64, num_blocks=2, num_scales=2, space_to_depth=True)),
    "realnvp32x2-s2d-3scales": ("realnvp", dict(hidden_channels=32, num_blocks=2, num_scales=3, space_to_depth=True)),
}
EIGHT_BIT = {"realnvp"}  # trained on 8-bit images (random levels: the cost does not depend on them)
torch.set_num_threads(2)
B = int(os.environ.get("B", "64"))
binary = (torch.rand(B, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.15).to(torch.uint8)
eight_bit = torch.randint(0, 256, (B, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
for name in sys.argv[1:] or list(CONFIGS):
    for compiled in ([False, True] if os.environ.get("COMPILE") else [False]):
        model_name, cfg = CONFIGS[name]
        torch.manual_seed(0)
        levels, x = (256, eight_bit) if model_name in EIGHT_BIT else (2, binary)
        model = genzoo.models.build(model_name, image_shape=(1, 28, 28), levels=levels, **cfg)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        step = torch.compile(_LossOf(model)) if compiled else _LossOf(model)
        t0 = time.perf_counter()
        for i in range(8):
            if i == 3:
                t1 = time.perf_counter()  # the first three steps (and compilation) are warm-up
            loss = step(x, None)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t1
        print(f"{name} compile={compiled} params={sum(p.numel() for p in model.parameters())} "
              f"warm-up={t1 - t0:.1f}s images/s={5 * B / dt:.1f}", flush=True)
