"""Annealed importance sampling (AIS) of a decoder-based model's likelihood, and bidirectional Monte Carlo (BDMC):
Neal, "Annealed Importance Sampling", Statistics and Computing 2001; Wu, Burda, Salakhutdinov & Grosse, "On the
Quantitative Analysis of Decoder-Based Generative Models", ICLR 2017 (AIS with HMC for VAEs and GANs, BDMC to check
it); Grosse, Ghahramani & Adams, "Sandwiching the marginal likelihood using bidirectional Monte Carlo", 2015.

A model p(x) = int p(z) p(x | z) dz with p(z) = N(0, I) (the VAE, the GAN with an observation model) is given by
``log_likelihood(z) -> log p(x | z)`` for each chain's image. AIS moves K chains per image from a start f_0 (the
prior, or a Gaussian such as a VAE's q(z | x)) through the intermediate densities f_b = f_0^(1 - b) f_1^b,
f_1(z) = p(z) p(x | z), b from 0 to 1 (a sigmoid schedule of T steps, Wu et al.), each step one Hamiltonian Monte
Carlo transition that leaves f_b invariant (``leapfrog`` steps, the step size adapted per chain toward an
acceptance of 0.65), and accumulates the weight log w = sum_t (b_t - b_{t-1}) log (f_1 / f_0)(z_{t-1}) (from the
prior: log p(x | z)).
E[w] = p(x), so log (1/K sum_k w_k) is a stochastic lower bound on log p(x): -(it) is an upper bound on -log P(x) in
expectation, tighter as T grows (exact as T -> infinity), with its Monte-Carlo standard error across images.

BDMC (Grosse et al. 2015): on data simulated from the model, (x, z) ~ p(z) p(x | z), z is an exact posterior draw,
so AIS run backwards from it (b from 1 to 0) estimates 1/p(x) unbiasedly: an upper bound on log p(x). The forward
(lower) and reverse (upper) bounds bracket the true log-likelihood of simulated data; their gap says how far AIS
with T steps is from exact, on data like the model's own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from .base import Options, require

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class AISOptions(Options):
    # annealed importance sampling with T steps from the prior to the posterior (Wu et al. 2017: a bound on
    # -log P(x) tighter as T grows); 0: the model's own bound
    ais_steps: int = 0
    ais_chains: int = 4  # AIS chains per image (their weights averaged: K)
    ais_leapfrog: int = 5  # leapfrog steps of each Hamiltonian Monte Carlo transition
    # bidirectional Monte Carlo on N images simulated from the model: the forward AIS and the reverse AIS bounds that
    # bracket their true log-likelihood, and the gap (0: none)
    bdmc: int = 0
    limits: ClassVar[dict] = {"ais_steps": (1, 1_000_000), "ais_chains": (1, 100_000), "ais_leapfrog": (1, 1000),
                              "bdmc": (1, 100_000)}


def log_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row [N] of z [N, L]."""
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)


def sigmoid_schedule(steps: int, rad: float = 4.0, dtype=torch.float64) -> torch.Tensor:
    """b_0 = 0 < b_1 < ... < b_T = 1, denser near both ends (Wu et al.'s sigmoid schedule): [T + 1]."""
    if steps == 1:
        return torch.tensor([0.0, 1.0], dtype=dtype)
    s = torch.sigmoid(torch.linspace(-rad, rad, steps + 1, dtype=dtype))
    return (s - s[0]) / (s[-1] - s[0])


class Start:
    """The chains' starting density f_0 = N(mean, diag e^logvar) per chain ([N, L] each; None: N(0, I), the prior),
    and h = log f_1 - log f_0 with f_1(z) = p(z) p(x | z), the log-ratio the weights accumulate."""

    def __init__(self, log_likelihood, mean=None, logvar=None):
        self.log_likelihood, self.mean, self.logvar = log_likelihood, mean, logvar

    def draw(self, n: int, latent_dim: int, generator, dtype, device):
        eps = torch.randn((n, latent_dim), generator=generator, dtype=dtype).to(device)
        return eps if self.mean is None else self.mean + torch.exp(0.5 * self.logvar) * eps

    def base(self, z):
        """-log f_0(z) up to its constant [N] and its gradient [N, L]."""
        if self.mean is None:
            return 0.5 * z.pow(2).sum(1), z
        d = (z - self.mean) * torch.exp(-self.logvar)
        return 0.5 * (d * (z - self.mean)).sum(1), d

    def ratio(self, z):
        """h(z) = log p(z) + log p(x | z) - log f_0(z) per chain [N] and its gradient [N, L]."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            h = self.log_likelihood(z)
            if self.mean is not None:
                h = h + log_normal(z) + 0.5 * (((z - self.mean) ** 2) * torch.exp(-self.logvar)
                                               + self.logvar + LOG_2PI).sum(1)
            (g,) = torch.autograd.grad(h.sum(), z)
        return h.detach(), g.detach()


def hmc_step(start, z, beta: float, step_size, leapfrog: int, generator, cached=None):
    """One Hamiltonian Monte Carlo transition per chain leaving f_b = f_0^(1 - b) f_1^b invariant (b = beta):
    z [N, L], step_size [N]; the potential U = -log f_0(z) - b h(z). ``start``: a :class:`Start` or a function
    z -> log p(x | z) (f_0 the prior). ``cached``: (h, its gradient) at z.
    Returns (z, accepted [N] bool, the cache at the returned z)."""
    start = start if isinstance(start, Start) else Start(start)
    h0, gh0 = cached if cached is not None else start.ratio(z)

    def potential(z_, h_):
        return start.base(z_)[0] - beta * h_

    def gradient(z_, gh_):
        return start.base(z_)[1] - beta * gh_

    eps = step_size[:, None]
    p0 = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
    zn, p = z, p0 - 0.5 * eps * gradient(z, gh0)
    for i in range(leapfrog):
        zn = zn + eps * p
        h, gh = start.ratio(zn)
        p = p - (eps if i < leapfrog - 1 else 0.5 * eps) * gradient(zn, gh)
    log_accept = (potential(z, h0) + 0.5 * p0.pow(2).sum(1)) - (potential(zn, h) + 0.5 * p.pow(2).sum(1))
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)
    uniform = torch.rand(len(z), generator=generator, dtype=z.dtype).to(z.device)
    accept = uniform.log() < log_accept
    a = accept[:, None]
    return torch.where(a, zn, z), accept, (torch.where(accept, h, h0), torch.where(a, gh, gh0))


def anneal(start, z: torch.Tensor, steps: int, leapfrog: int = 5, generator=None,
           reverse: bool = False, step_size: float = 0.05) -> torch.Tensor:
    """The AIS log-weights [N] of N chains at z [N, L]: forward (z drawn from f_0; b 0 -> 1; E[exp] = p(x)) or
    ``reverse`` (z an exact posterior draw; b 1 -> 0; E[exp] = 1 / p(x)). ``start``: a :class:`Start`, or a
    function z -> log p(x | z) (the chains then start from the prior)."""
    start = start if isinstance(start, Start) else Start(start)
    betas = sigmoid_schedule(steps).tolist()
    if reverse:
        betas = betas[::-1]
    size = torch.full((len(z),), step_size, dtype=z.dtype, device=z.device)
    log_w = torch.zeros(len(z), dtype=torch.float64, device=z.device)
    cached = start.ratio(z)
    for b_prev, b in zip(betas[:-1], betas[1:]):
        log_w += (b - b_prev) * cached[0].double()  # log f_b / f_b_prev at the current z
        z, accept, cached = hmc_step(start, z, b, size, leapfrog, generator, cached)
        size = size * torch.where(accept, 1.011, 0.98)  # balanced where 0.65 are accepted (Wu et al.)
    return log_w


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def _chains(log_likelihood_of, x, chains: int, posterior, dtype) -> Start:
    """The :class:`Start` of ``chains`` chains per image of x [B, ...] (chain k of image b at k B + b): from the
    prior, or from ``posterior`` (mean, logvar) [B, L] repeated for each chain."""
    xs = x.repeat(chains, *[1] * (x.dim() - 1))  # (K B, ...)
    if posterior is None:
        return Start(lambda zz: log_likelihood_of(xs, zz))
    return Start(lambda zz: log_likelihood_of(xs, zz), posterior[0].repeat(chains, 1).to(dtype),
                 posterior[1].repeat(chains, 1).to(dtype))


def ais_log_likelihood(log_likelihood_of, x: torch.Tensor, latent_dim: int, steps: int, chains: int,
                       leapfrog: int = 5, generator=None, dtype=torch.float32, posterior=None) -> torch.Tensor:
    """AIS's stochastic lower bound on log p(x) [B]: ``chains`` forward chains per image, their weights averaged.
    log_likelihood_of(x [N, ...], z [N, L]) -> log p(x | z) [N]. ``posterior``: (mean, logvar) [B, L] of a Gaussian
    to start from instead of the prior (a VAE's q(z | x): with one step the weights are IWAE's, each step more
    anneals toward the true posterior)."""
    require(steps >= 1 and chains >= 1, "AIS needs steps >= 1 and chains >= 1")
    B = len(x)
    start = _chains(log_likelihood_of, x, chains, posterior, dtype)
    z = start.draw(chains * B, latent_dim, generator, dtype, x.device)
    log_w = anneal(start, z, steps, leapfrog, generator)
    return log_mean_exp(log_w.view(chains, B))


def bdmc(log_likelihood_of, simulate, n: int, latent_dim: int, steps: int, chains: int, leapfrog: int = 5,
         generator=None, dtype=torch.float32, posterior_of=None) -> dict:
    """Bidirectional Monte Carlo on n images simulated from the model: simulate(z [n, L]) -> x ~ p(x | z); the
    mean forward AIS lower bound and reverse AIS upper bound on log p(x) (nats per image) and their gap.
    ``posterior_of``: x -> (mean, logvar) of the Gaussian the chains start from (as ``ais_log_likelihood``)."""
    z = torch.randn((n, latent_dim), generator=generator, dtype=dtype)
    x = simulate(z)
    posterior = posterior_of(x) if posterior_of is not None else None
    lower = ais_log_likelihood(log_likelihood_of, x, latent_dim, steps, chains, leapfrog, generator, dtype, posterior)
    start = _chains(log_likelihood_of, x, chains, posterior, dtype)
    log_w = anneal(start, z.to(x.device).repeat(chains, 1), steps, leapfrog, generator, reverse=True)
    upper = -log_mean_exp(log_w.view(chains, n))
    return {"images": n, "lower_log_likelihood": lower.mean().item(), "upper_log_likelihood": upper.mean().item(),
            "gap": (upper - lower).mean().item()}


def ais_summary(options: dict, bidirectional, middle: str = "") -> tuple[dict, str]:
    """What ``genzoo eval`` says beside an AIS figure: its entries and words (steps, chains, leapfrog; ``middle``, a
    model's own words, e.g. its observation model), and BDMC's bounds where ``options["bdmc"]`` asks, from
    ``bidirectional(n)`` (a model's :func:`bdmc` on n simulated images)."""
    o = options
    entries = {k: o[k] for k in ("ais_steps", "ais_chains", "ais_leapfrog")}
    text = (f", annealed importance sampling: {o['ais_steps']} steps, {o['ais_chains']} chains per image, HMC with "
            f"{o['ais_leapfrog']} leapfrog steps{middle}")
    if o.get("bdmc"):
        b = entries["bdmc"] = bidirectional(o["bdmc"])
        text += (f"; BDMC on {b['images']} simulated images: log P between {b['lower_log_likelihood']:.3f} and "
                 f"{b['upper_log_likelihood']:.3f} (gap {b['gap']:.3f} nats)")
    return entries, text
