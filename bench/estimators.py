"""Why the VAE differentiates through its sample: two unbiased gradient estimators of an expectation, measured.

    .venv/bin/python bench/estimators.py      # the variance table in docs/RESULTS.md

For L(theta) = E_{x ~ N(theta, 1)}[x^2] = theta^2 + 1, the true gradient is 2 theta.

* Reparameterization (pathwise; Kingma & Welling 2014): x = theta + eps, eps ~ N(0, 1), so
  dL/dtheta = E[d(theta + eps)^2 / dtheta] = E[2 (theta + eps)]; one sample's variance is 4.
* Score function (REINFORCE; Williams 1992): dL/dtheta = E[x^2 d log N(x; theta, 1) / dtheta]
  = E[x^2 (x - theta)]; one sample's variance is theta^4 + 14 theta^2 + 15 (from the normal's moments up
  to the sixth: 30 at theta = 1), far larger, which is why the VAE differentiates through the sample.

Both are computed with autograd (the reparameterized sample is differentiated; the score
function differentiates log N(x; theta, 1) at a sample that carries no gradient), so this is
the mechanism a VAE relies on, not a hand-written formula.
"""

from __future__ import annotations

import math

import torch


def reparameterization_gradients(theta: float, n: int, generator=None) -> torch.Tensor:
    """n one-sample estimates [n] of d/dtheta E[x^2]: autograd through x = theta + eps."""
    t = torch.full((n,), float(theta), dtype=torch.float64, requires_grad=True)  # one theta per sample
    x = t + torch.randn(n, generator=generator, dtype=torch.float64)  # the sample depends on theta
    (grad,) = torch.autograd.grad((x**2).sum(), t)  # = 2 x_i, sample by sample
    return grad


def score_function_gradients(theta: float, n: int, generator=None) -> torch.Tensor:
    """n one-sample estimates [n] of d/dtheta E[x^2]: x^2 times autograd of log N(x; theta, 1)."""
    t = torch.full((n,), float(theta), dtype=torch.float64, requires_grad=True)
    x = float(theta) + torch.randn(n, generator=generator, dtype=torch.float64)  # a sample: no gradient flows
    log_density = -0.5 * (x - t) ** 2 - 0.5 * math.log(2 * math.pi)
    (grad,) = torch.autograd.grad((x**2 * log_density).sum(), t)  # = x_i^2 (x_i - theta)
    return grad


def variance_table(theta: float = 1.0, sample_counts=(1, 10, 100, 1000), repeats: int = 2000,
                   seed: int = 0) -> list[dict]:
    """For each sample count n: the mean and variance (over ``repeats``) of each n-sample average."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in sample_counts:
        row = {"n": n, "true": 2 * theta}
        for name, fn in (("reparameterization", reparameterization_gradients), ("score_function",
                                                                                score_function_gradients)):
            est = fn(theta, n * repeats, g).view(repeats, n).mean(1)
            row[f"{name}_mean"], row[f"{name}_var"] = est.mean().item(), est.var().item()
            row[f"{name}_se"] = math.sqrt(row[f"{name}_var"] / repeats)
        rows.append(row)
    return rows


if __name__ == "__main__":
    print("| samples n | true gradient | reparameterization mean | variance | score function mean | variance | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in variance_table():
        print(f"| {r['n']} | {r['true']:.3f} | {r['reparameterization_mean']:.4f} | {r['reparameterization_var']:.5f} "
              f"| "
              f"{r['score_function_mean']:.4f} | {r['score_function_var']:.5f} | "
              f"{r['score_function_var'] / r['reparameterization_var']:.1f}x |")
