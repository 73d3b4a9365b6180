"""Masked (absorbing-state) diffusion on the k levels of the discrete image: Austin et al., "Structured Denoising
Diffusion Models in Discrete State-Spaces", NeurIPS 2021 (D3PM, absorbing); Shi et al., "Simplified and
Generalized Masked Diffusion for Discrete Data", NeurIPS 2024 (MD4: 2.75 bits/dim on CIFAR-10); Sahoo et al.,
"Simple and Effective Masked Diffusion Language Models", NeurIPS 2024 (MDLM).

The forward process masks each sub-pixel independently: at time t in [0, 1] it is still itself with probability
alpha_t (alpha_0 = 1, alpha_1 = 0; ``schedule`` linear 1 - t or cosine cos(pi t / 2)) and the mask token m
otherwise. The network sees the unmasked levels and where the mask is (two input channels per image channel: the
level on [-1, 1] or 0, and the mask) and gives, for every sub-pixel, log-probabilities over its k levels; it does
not see t (the mask carries it; MD4 section 3, MDLM). The bound on the discrete image, with no dequantization
(MD4 eq. 4, continuous time),

    -log P(x) <= int_0^1 -alpha'_t / (1 - alpha_t) E_{z_t ~ q(. | x)} [sum_{i masked in z_t} -log p(x_i | z_t)] dt,

is estimated with one stratified t per image in training and K per image in ``genzoo eval --t-samples K`` (with
its Monte-Carlo standard error). Substituting u = 1 - alpha_t, a mask of m of the D sub-pixels has weight
integral_0^1 u^(m-1) (1 - u)^(D-m) du = (m - 1)! (D - m)! / D!, whatever the schedule: the bound is the expected
negative log-likelihood of the any-order autoregressive model whose conditionals are p(x_i | z), over uniformly
random orders (MD4 section 4), so it equals -log P(x) when the conditionals are exact (tested), and the schedule
changes only the estimator's variance.

Sampling in ``steps`` S unmasking steps from t = 1 to 0: at each, as many masked sub-pixels as the schedule says
(round(F (alpha_s - alpha_t)) of F free ones, chosen uniformly) are drawn from p(x_i | z_t); S = D unmasks one a
step, an any-order autoregressive draw. Completion: the known sub-pixels start (and stay) unmasked.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...likelihood import bits_per_dim
from ..base import GenerativeModel, Options, require, require_count, require_num_classes, to_signed
from ..registry import register
from .unet import UNetConfig
from .vdm import TimeSampledEvaluation, standard_error

SCHEDULES = ("linear", "cosine")


@dataclasses.dataclass
class MaskedDiffusionConfig(UNetConfig):
    # alpha_t, the share of sub-pixels still unmasked at t: linear 1 - t or cosine cos(pi t / 2) (the same bound;
    # another variance of its estimator)
    schedule: str = "linear"
    num_classes: int = 0  # > 0: class-conditional (a class embedding in the U-Net)
    choices = {"schedule": SCHEDULES}

    def __post_init__(self):
        super().__post_init__()
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require_num_classes(self)


@dataclasses.dataclass
class MaskedSampling(Options):
    # unmasking steps from all masked to none (one network pass each); the number of sub-pixels D: one a step, an
    # any-order autoregressive draw
    steps: int = 64
    temperature: float = 1.0  # the conditionals' logits divided by it; below 1: safer, less varied samples
    limits: ClassVar[dict] = {"steps": (1, 100_000), "temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


@register
class MaskedDiffusion(GenerativeModel):
    """Masked (absorbing-state) diffusion (MD4, MDLM): a bound on the k levels, no dequantization."""

    name = "masked-diffusion"
    Config = MaskedDiffusionConfig
    likelihood_kind = "bound"
    can_complete = True
    monte_carlo_bound = True  # estimate(x, t_samples=K): the bound averaged over K stratified times per image
    sample_options = frozenset({"prefix", "known", "steps", "temperature", "progress"})
    SampleOptions = MaskedSampling
    EvalOptions = TimeSampledEvaluation

    def __init__(self, config: MaskedDiffusionConfig):
        super().__init__(config)
        C = config.image_shape[0]
        self.net = config.unet(2 * C, C * config.levels)

    # -- the schedule: alpha_t and the bound's weight -alpha'_t / (1 - alpha_t)
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t if self.config.schedule == "linear" else torch.cos(math.pi * t / 2)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        if self.config.schedule == "linear":
            return 1 / t
        return (math.pi / 2) * torch.sin(math.pi * t / 2) / (1 - torch.cos(math.pi * t / 2))

    # -- the network: log p(x_i | z) over the k levels for every sub-pixel
    def conditionals(self, x: torch.Tensor, mask: torch.Tensor, y=None) -> torch.Tensor:
        """x: levels [B, C, H, W] (read where not masked), mask: bool [B, C, H, W] -> log-probs [B, k, C, H, W]."""
        B, C, H, W = x.shape
        inp = torch.cat([to_signed(x, self.levels, self.dtype).masked_fill(mask, 0), mask.to(self.dtype)], 1)
        out = self.net(inp, torch.zeros(B, dtype=self.dtype, device=x.device), y)  # (B, C k, H, W)
        return F.log_softmax(out.view(B, C, self.levels, H, W).transpose(1, 2).float(), dim=1)

    def masked_nll(self, x, mask, y=None) -> torch.Tensor:
        """[B] nats: sum over the masked sub-pixels of -log p(x_i | the unmasked ones)."""
        logp = self.conditionals(x, mask, y).gather(1, x.long()[:, None])[:, 0]  # (B, C, H, W)
        return -(logp * mask).flatten(1).sum(1)

    def terms(self, x, y, t, generator=None) -> torch.Tensor:
        """One draw of the bound's integrand per image at times t [B]: the weight times the masked NLL, nats."""
        tt = t.view(-1, 1, 1, 1)
        keep = torch.rand(x.shape, generator=generator, dtype=self.dtype).to(x.device) < self.alpha(tt)
        return self.weight(t) * self.masked_nll(x, ~keep, y)

    def loss(self, x, y=None):
        """Training objective and test figure: the bound with one t per image, low-discrepancy over the batch
        (t_b = 1 - ((u + b / B) mod 1), in (0, 1]; seeded in eval mode)."""
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        g = None if self.training else torch.Generator().manual_seed(0)
        B = x.shape[0]
        u = torch.rand((), generator=g, dtype=self.dtype)
        t = (1 - (u + torch.arange(B, dtype=self.dtype) / B) % 1).to(x.device)
        nll = self.terms(x, y if y is None else y.to(x.device), t, g)
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims)}

    @torch.no_grad()
    def estimate(self, x, y=None, t_samples: int = 1, generator=None) -> dict:
        """The bound per image [B] in nats averaged over ``t_samples`` stratified times (and masks), with
        "nll_var", the sample variance over those draws (0 for one)."""
        self.check_images(x)
        require(isinstance(t_samples, int) and t_samples >= 1,
                f"t_samples must be a positive integer, got {t_samples!r}")
        y = self.check_labels(y, x.shape[0])
        y = y if y is None else y.to(x.device)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        draws = torch.stack([self.terms(x, y, (1 - (i + torch.rand(len(x), generator=g, dtype=self.dtype)) / t_samples)
                                        .to(x.device), g) for i in range(t_samples)])  # (K, B), t in (0, 1]
        return {"nll": draws.mean(0), "nll_var": draws.var(0) if t_samples > 1 else torch.zeros_like(draws[0])}

    def log_prob(self, x, y=None, t_samples: int = 1, generator=None):
        """-(the bound) [B] in nats over ``t_samples`` stratified times per image (x: anything ``images`` takes).
        Random over the times and masks drawn, but seeded (seed 0) unless ``generator`` is given."""
        return -self.estimate(self.images(x), y, t_samples, generator)["nll"]

    def eval_figures(self, x, y=None, generator=None, t_samples: int = 1):
        return self.estimate(x, y, t_samples, generator=generator)

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        k = options.get("t_samples", 1)
        se, words = standard_error(k, means, count)
        return {"t_samples": k, **se}, f", {k} time(s) per image{words}"

    def estimator_words(self, options: dict) -> str:
        k = options.get("t_samples")
        return f": the masked-diffusion bound averaged over {k} seeded times per image" if k else ""

    # -- sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, prefix=None, known=None,
               steps: int = 64, temperature: float = 1.0, progress=None) -> torch.Tensor:
        """Draw n images uint8 [n, C, H, W] in ``steps`` unmasking steps (module docstring); ``prefix`` with
        ``known`` (bool [C, H, W] or [n, C, H, W]): completion, the known sub-pixels unmasked from the start.
        y: [n] classes of a conditional model (default 0, 1, 2, ...). ``progress``: the share done, in rows."""
        require_count(n)
        require(isinstance(steps, int) and steps >= 1 and temperature > 0, "steps must be >= 1 and temperature > 0")
        (C, H, W), device = self.image_shape, next(self.parameters()).device
        if self.num_classes and y is None:
            y = torch.arange(n) % self.num_classes
        y = self.check_labels(y, n)
        y = y if y is None else y.to(device)
        x = torch.zeros((n, C, H, W), dtype=torch.long, device=device)
        mask = torch.ones((n, C, H, W), dtype=torch.bool, device=device)
        if prefix is not None:
            self.check_images(prefix)
            require(prefix.shape[0] == n and known is not None, "completion needs prefix of n images and a known mask")
            mask = ~torch.as_tensor(known, dtype=torch.bool, device=device).expand(n, C, H, W).clone()
            x = torch.where(mask, x, prefix.to(device).long())
        free = mask.flatten(1).sum(1)  # (n,) sub-pixels to draw
        for i in range(steps, 0, -1):
            masked_after = 1 - float(self.alpha(torch.tensor((i - 1) / steps, dtype=torch.float64)))
            draw = mask.flatten(1).sum(1) - torch.round(free * masked_after).long()  # (n,) to unmask now
            if draw.max() > 0:
                x, mask = self._unmask(x, mask, draw, y, temperature, generator)
            if progress is not None:
                progress(round(H * (steps - i + 1) / steps))
        return x.to(torch.uint8)

    def _unmask(self, x, mask, draw, y, temperature: float, generator):
        """Unmask ``draw`` [n] uniformly chosen masked sub-pixels of each image, each drawn from p(x_i | z)."""
        n = x.shape[0]
        scores = torch.rand(mask.shape, generator=generator).to(x.device).masked_fill(~mask, 2.0)  # masked first
        rank = scores.flatten(1).argsort(1).argsort(1).view_as(mask)  # (n, C, H, W): 0 = the first to unmask
        chosen = mask & (rank < draw.view(n, 1, 1, 1))
        logp = self.conditionals(x, mask, y) / temperature  # (n, k, C, H, W)
        u = torch.rand(logp.shape, generator=generator, dtype=logp.dtype).clamp(1e-20, 1 - 1e-7)
        gumbel = (-torch.log(-torch.log(u))).to(x.device)
        new = (logp + gumbel).argmax(1)  # a draw from the softmax (the Gumbel-max trick)
        return torch.where(chosen, new, x), mask & ~chosen
