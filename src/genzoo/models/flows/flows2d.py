"""2-D toy flows for intuition: two moons, eight Gaussians, checkerboard.

``genzoo toy realnvp --data moons -o density.png`` (``cli/toy.py``,
                                                    which draws the picture) trains a small flow of the same transforms
as the image models (affine couplings for RealNVP; additive couplings and a diagonal scaling
for NICE) on samples of a 2-D density in seconds, and plots the data, the learned density
exp(log p) on a grid, and samples drawn through the inverse.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ...errors import GenzooError
from .transforms import (AdditiveCoupling, AffineCoupling, DiagonalScaling, Sequential, StandardNormal,
                                alternating_mask, coupling_mlp, log_density)

DATASETS = ("moons", "8gaussians", "checkerboard")
KINDS = ("nice", "realnvp")


def toy_data(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points [n, 2] of a 2-D density, roughly within [-4, 4]^2."""
    if name == "moons":
        from sklearn.datasets import make_moons

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        x, _ = make_moons(n, noise=0.05, random_state=seed)
        return torch.from_numpy((x - np.array([0.5, 0.25])) * 2).float()  # centred, about [-3, 3]
    if name == "8gaussians":
        angle = torch.randint(0, 8, (n,), generator=generator).float() * (2 * math.pi / 8)
        centres = 2.5 * torch.stack([angle.cos(), angle.sin()], dim=1)
        return centres + 0.2 * torch.randn(n, 2, generator=generator)
    if name == "checkerboard":
        x1 = torch.rand(n, generator=generator) * 4 - 2
        x2 = torch.rand(n, generator=generator) - torch.randint(0, 2, (n,), generator=generator) * 2.0
        x2 = x2 + (x1.floor() % 2)
        return torch.stack([x1, x2], dim=1) * 1.5
    raise GenzooError(f"unknown toy data {name!r}; choose from {', '.join(DATASETS)}")


class ToyFlow(nn.Module):
    """A 2-D flow: couplings alternating which coordinate is kept, then a Gaussian prior."""

    def __init__(self, kind: str, num_couplings: int = 8, hidden: int = 64):
        super().__init__()
        if kind not in KINDS:
            raise GenzooError(f"toy flows are {', '.join(KINDS)}, got {kind!r}")
        masks = [alternating_mask(2, i % 2) for i in range(num_couplings)]
        if kind == "nice":
            steps = [AdditiveCoupling(m, coupling_mlp(2, hidden, 2, 2)) for m in masks] + [DiagonalScaling(2)]
        else:
            steps = [AffineCoupling(m, coupling_mlp(2, hidden, 2, 4), 2) for m in masks]
        self.transform = Sequential(*steps)
        self.prior = StandardNormal()

    def log_prob(self, x):
        """x [B, 2] -> log p(x) [B], nats: log N(f(x)) + log |det df/dx|."""
        return log_density(self.transform, self.prior, x)

    @torch.no_grad()
    def sample(self, n, generator=None):
        return self.transform.inverse(torch.randn(n, 2, generator=generator))[0]


def train_toy(kind: str, data: str, steps: int = 1500, batch: int = 256, lr: float = 3e-3, seed: int = 0):
    """Train a :class:`ToyFlow` by maximum likelihood; returns (flow, final mean NLL in nats)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    flow = ToyFlow(kind)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    nll = math.nan
    for _ in tqdm(range(steps), desc=f"training {kind} on {data}", disable=None, file=sys.stderr, leave=False):
        loss = -flow.log_prob(toy_data(data, batch, g)).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        sched.step()
        nll = loss.item()
    return flow, nll


@torch.no_grad()
def density_grid(flow: ToyFlow, lim: float = 4.0, n: int = 200):
    """(xs [n], ys [n], density [n, n]) of exp(log p) on [-lim, lim]^2, cell area (2 lim / n)^2."""
    xs = torch.linspace(-lim, lim, n + 1)[:-1] + lim / n  # cell centres
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    logp = flow.log_prob(torch.stack([gx.flatten(), gy.flatten()], dim=1)).view(n, n)
    return xs, xs, logp.exp()
