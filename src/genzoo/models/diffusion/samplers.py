"""The diffusion samplers, apart from the network (as diffusers keeps its schedulers): one step of each from the
network's noise prediction eps_hat(z_t, t), in the -log SNR parametrisation gamma(t) of the variance-preserving
process z_t = alpha_t x + sigma_t eps, alpha_t^2 = sigmoid(-gamma), sigma_t^2 = sigmoid(gamma) (Kingma et al. 2021).

* ancestral: a draw from the posterior q(z_s | z_t, x_hat) (Ho et al. 2020; VDM appendix A);
* DDIM: the deterministic update z_s = alpha_s x_hat + sigma_s eps_hat (Song et al. 2021), the probability-flow
  ODE's first-order (Euler) solver in the log-SNR;
* DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2): the same ODE solved in the log-SNR
  lambda = log(alpha / sigma) = -gamma / 2 with the data prediction x_hat, second order by reusing the previous
  step's x_hat (multistep): with h = lambda_s - lambda_t and r = h_prev / h,
      z_s = (sigma_s / sigma_t) z_t - alpha_s (e^{-h} - 1) D,   D = (1 + 1/(2r)) x_hat_t - 1/(2r) x_hat_prev,
  D = x_hat_t at the first step (where it is DDIM) and, for fewer than 15 steps, at the last (lower order at the
  end, as the paper and diffusers do); 100-step quality in 10-20 network passes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from ..base import Options, require

SOLVERS = ("ancestral", "ddim", "dpm++")


@dataclasses.dataclass
class DiffusionSampling(Options):
    steps: int = 100  # denoising steps from t = 1 to 0 (one network pass each)
    # ancestral (a draw from the posterior at every step), ddim (deterministic: the same z_1 gives the same image)
    # or dpm++ (DPM-Solver++(2M), deterministic, second order: 10-20 steps)
    solver: str = "ancestral"
    ddim: bool = False  # the old name of --solver ddim
    # classifier-free guidance weight w of a class-conditional model (0: the plain conditional draw)
    guidance: float = 0.0
    limits: ClassVar[dict] = {"steps": (1, 100_000), "guidance": (0, None)}
    choices: ClassVar[dict] = {"solver": SOLVERS}

    def __post_init__(self):
        require(self.solver in SOLVERS and not (self.ddim and self.solver == "dpm++"),
                f"solver must be one of {', '.join(SOLVERS)} (--ddim is --solver ddim), got {self.solver!r}")


def alpha_sigma(gamma):
    """(alpha, sigma) of the variance-preserving process at -log SNR gamma (any shape)."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def posterior_step(z, eps, g_t, g_s, ddim: bool, noise, clip: bool = True):
    """z_t -> z_s: the posterior q(z_s | z_t, x_hat) (ancestral, s < t), or the DDIM update (either way;
    ``clip``: x_hat clipped to the data's range, as DDPM's sampler does; inversion must not)."""
    (a_t, s_t), (a_s, s_s) = alpha_sigma(g_t), alpha_sigma(g_s)
    x_hat = (z - s_t * eps) / a_t  # the prediction of x [-1, 1], clipped to the data's range (both samplers)
    x_hat = x_hat.clamp(-1, 1) if clip else x_hat
    if ddim:
        return a_s * x_hat + s_s * eps
    c = -torch.expm1(g_s - g_t)  # 1 - SNR(t) / SNR(s) = sigma_{t|s}^2 / sigma_t^2
    # q(z_s | z_t, x_hat): mean (1 - c) (alpha_s / alpha_t) z_t + c alpha_s x_hat, variance c sigma_s^2 (VDM
    # appendix A); unclipped, x_hat = (z - sigma_t eps) / alpha_t makes it (alpha_s / alpha_t)(z - c sigma_t eps)
    return (1 - c) * (a_s / a_t) * z + c * a_s * x_hat + (s_s ** 2 * c).sqrt() * noise


def spherical_path(z0, z1, t):
    """Spherical interpolation between noises: z0, z1 [P, ...], t [S] -> [P, S, ...]. A straight line
    passes through noise of too small a norm, which the sampler turns into flat grey (DDIM section 5.3)."""
    a, b = z0.flatten(1), z1.flatten(1)  # (P, D)
    omega = torch.acos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).clamp(1e-6, math.pi - 1e-6)  # (P,)
    w0 = torch.sin((1 - t[None, :]) * omega[:, None]) / torch.sin(omega)[:, None]  # (P, S)
    w1 = torch.sin(t[None, :] * omega[:, None]) / torch.sin(omega)[:, None]
    shape = (*w0.shape, *[1] * (z0.dim() - 1))
    return w0.view(shape) * z0[:, None] + w1.view(shape) * z1[:, None]  # (P, S, ...)


def dpm_solver_pp_step(z, x_hat, g_t, g_s, previous=None):
    """DPM-Solver++(2M), one step z_t -> z_s from the (clipped) data prediction x_hat at t; ``previous``:
    (x_hat, h) of the step before for the second order, None for the first. Returns (z_s, (x_hat, h))."""
    s_t, (a_s, s_s) = alpha_sigma(g_t)[1], alpha_sigma(g_s)
    h = (g_t - g_s) / 2  # lambda_s - lambda_t > 0: the log-SNR grows toward t = 0
    d = x_hat
    if previous is not None:
        x_prev, h_prev = previous
        r = h_prev / h
        d = (1 + 1 / (2 * r)) * x_hat - (1 / (2 * r)) * x_prev
    return (s_s / s_t) * z - a_s * torch.expm1(-h) * d, (x_hat, h)


def log_snr_uniform_times(gamma_of, steps: int, like) -> torch.Tensor:
    """[steps + 1] times from 1 to 0 whose -log SNR gamma(t) is evenly spaced (uniform in lambda, the spacing
    DPM-Solver recommends for pixel-space models), by bisection on the monotone schedule (gamma_of: [N] -> [N])."""
    ends = gamma_of(torch.tensor([0.0, 1.0], dtype=like.dtype, device=like.device))
    target = torch.linspace(ends[1].item(), ends[0].item(), steps + 1, dtype=like.dtype, device=like.device)
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(50):  # 2^-50: exact to double precision
        mid = (lo + hi) / 2
        below = gamma_of(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    times = (lo + hi) / 2
    times[0], times[-1] = 1.0, 0.0
    return times


def solve(z, steps: int, solver: str, eps_at, gamma_at, draw, after=None, progress=None, times=None):
    """Run ``solver`` from z_1 = z to z_0 in ``steps`` steps: at ``times`` ([steps + 1], 1 to 0; default uniform in
    t), eps_at(z, t) the network's noise prediction, gamma_at(t) the -log SNR, draw() fresh noise (drawn at every
    step whatever the solver, so a seed gives the same images as before DPM-Solver++ existed), after(z, g_s) applied
    after each step (completion by replacement), progress(share done) for a progress bar. Returns z_0."""
    previous = None
    for i in range(steps, 0, -1):
        t, s = (i / steps, (i - 1) / steps) if times is None else (times[steps - i].item(), times[steps - i + 1].item())
        g_t, g_s = gamma_at(t), gamma_at(s)
        eps, noise = eps_at(z, t), draw()
        if solver == "dpm++":
            a_t, s_t = alpha_sigma(g_t)
            x_hat = ((z - s_t * eps) / a_t).clamp(-1, 1)
            last_low = i == 1 and steps < 15
            z, previous = dpm_solver_pp_step(z, x_hat, g_t, g_s, None if last_low else previous)
        else:
            z = posterior_step(z, eps, g_t, g_s, solver == "ddim", noise)
        if after is not None:
            z = after(z, g_s)
        if progress is not None:
            progress((steps - i + 1) / steps)
    return z
