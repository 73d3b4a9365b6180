"""Glow: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
(arXiv:1807.03039). Published: 3.35 bits/dim on CIFAR-10, 1.05 on MNIST (tables 2 and 4; L = 3
scales of K = 32 steps, 512-channel coupling nets, days of GPU).

The multi-scale architecture (figure 2): at each of ``num_scales`` scales, a squeeze, then K steps of

    ActNorm (per-channel affine, data-dependent initialisation)  ->  invertible 1x1 convolution
    (a learned channel permutation, LU-parameterised by default)  ->  coupling on channel halves
    (affine with a sigmoid scale, or additive)

then a split: half of the channels leave with a **learned conditional prior**
p(z_a | h_b) = N(mu(h_b), sigma(h_b)^2) (a zero-initialised 3x3 convolution of the half that goes
on), the other half goes to the next scale; after the last scale, a learned per-channel Gaussian
(shifted by the class with ``num_classes``, section 5.3's class-conditional prior).

Every Gaussian prior is written as a transform to standard normal noise, eps = (z - mu) / sigma
(log-det -sum log sigma), so the model is one invertible map u -> eps of the image's shape with a
N(0, I) base, like the other flows here: the change of variables, the inverse and the
log-determinant checks cover the priors too, and ``temperature`` T (eps ~ N(0, T^2)) is Glow's
sampling temperature at every scale. The image is centred first (u - 1/2, section 5's
preprocessing; log-det 0), or with ``logit_alpha`` > 0 mapped by RealNVP's logit instead (its log-det
counted), and uniformly dequantized, so the figure is a bound, as for every flow (docs/CONTRACT.md).

Not the paper's: the coupling nets have no ActNorm inside, and no learned output scale (the last
convolution starts at zero, so each coupling starts as the identity); scales stop early where H or
W become odd (28 x 28: two scales). The recipe toward the paper's CIFAR-10 figure is L = 3, K = 32,
``hidden_channels`` 512, Adam lr 1e-3 with warm-up, batch 64, hundreds of GPU epochs: not run here.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..base import ImageConfig, require, require_num_classes, require_positive_ints
from .flow_base import Flow
from ..registry import register
from .transforms import (ActNorm, ChannelCoupling, InvertibleConv1x1, Logit, Sequential, Squeeze, StandardNormal,
                         sum_per_example)


@dataclasses.dataclass
class GlowConfig(ImageConfig):
    num_scales: int = 3  # L: squeeze, K steps, split (fewer where H or W stops being even)
    steps_per_scale: int = 8  # K (32 in the paper)
    hidden_channels: int = 64  # width of each coupling's net (512 in the paper)
    choices: ClassVar[dict] = {"coupling": ("affine", "additive")}
    coupling: str = "affine"  # affine (sigmoid scale) or additive (volume preserving)
    lu: bool = True  # the 1x1 convolution in LU form (log-det O(C)); false: a plain matrix (slogdet)
    num_classes: int = 0  # > 0: the top prior's mean and scale depend on the class (section 5.3)
    logit_alpha: float = 0.0  # > 0: RealNVP's logit preprocessing instead of the centring; 0: the paper's

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "num_scales", "steps_per_scale", "hidden_channels")
        require(self.coupling in ("affine", "additive"), f"coupling must be affine or additive, got {self.coupling!r}")
        require(isinstance(self.lu, bool), f"lu must be true or false, got {self.lu!r}")
        require_num_classes(self)
        require(isinstance(self.logit_alpha, (int, float)) and 0 <= self.logit_alpha < 0.5,
                f"logit_alpha must be in [0, 0.5), got {self.logit_alpha!r}")
        _, H, W = self.image_shape
        require(H % 2 == 0 and W % 2 == 0, f"glow squeezes the image at every scale: H and W must be even, got {H} x "
                                           f"{W}")


def zero_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 convolution that starts at zero: a coupling starts as the identity, a prior as N(0, I)."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def coupling_net(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Glow's coupling network (section 3.3): 3x3 conv, ReLU, 1x1 conv, ReLU, zero 3x3 conv.
    [B, c_in, H, W] -> [B, c_out, H, W]."""
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         zero_conv(hidden, c_out))


class SplitPrior(nn.Module):
    """The learned prior of a factored-out half (section 3, figure 2b), as a transform of [B, C, H, W]:
    x = [z_a, h_b] (z_a the first C // 2 channels), (mu, log_sigma) = conv(h_b), and

        eps_a = (z_a - mu) exp(-log_sigma),   log |det| = -sum log_sigma,

    so that log N(z_a; mu, sigma^2) = log N(eps_a; 0, I) + log |det|: the conditional prior is an affine
    coupling whose output meets the standard normal base. h_b passes unchanged.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.half = channels // 2
        self.net = zero_conv(channels - self.half, 2 * self.half)

    def _mu_log_sigma(self, h_b):
        return self.net(h_b).split(self.half, dim=1)

    def forward(self, x):
        z_a, h_b = x[:, :self.half], x[:, self.half:]
        mu, log_sigma = self._mu_log_sigma(h_b)
        return torch.cat([(z_a - mu) * torch.exp(-log_sigma), h_b], 1), -sum_per_example(log_sigma)

    def inverse(self, y):
        eps_a, h_b = y[:, :self.half], y[:, self.half:]
        mu, log_sigma = self._mu_log_sigma(h_b)
        return torch.cat([eps_a * torch.exp(log_sigma) + mu, h_b], 1), sum_per_example(log_sigma)


class TopPrior(nn.Module):
    """The learned prior after the last scale: N(mu, sigma^2) per channel, plus a per-class shift of both
    with ``num_classes`` (section 5.3), zero at the start. As a transform to N(0, I) like SplitPrior;
    y None (also in a class-conditional model): the classless prior, e.g. for encode / decode."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.base = nn.Parameter(torch.zeros(2 * channels))
        self.by_class = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        if self.by_class is not None:
            nn.init.zeros_(self.by_class.weight)

    def _mu_log_sigma(self, h, y):
        p = self.base.expand(h.shape[0], -1)
        if y is not None and self.by_class is not None:
            p = p + self.by_class(y)
        mu, log_sigma = p[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return mu, log_sigma.expand_as(h)

    def forward(self, h, y=None):
        mu, log_sigma = self._mu_log_sigma(h, y)
        return (h - mu) * torch.exp(-log_sigma), -sum_per_example(log_sigma)

    def inverse(self, eps, y=None):
        mu, log_sigma = self._mu_log_sigma(eps, y)
        return eps * torch.exp(log_sigma) + mu, sum_per_example(log_sigma)


class GlowScale(nn.Module):
    """One scale of figure 2 on [B, C, H, W]: squeeze to [4C, H/2, W/2], K steps of flow, then either the
    split (SplitPrior, the second half through the next scale) or, at the last scale, the top prior; the
    result is un-squeezed, so the whole map keeps the image's shape (each factored-out part in place).
    (x, y) -> (eps, log |det| [B]); y: [B] classes or None, used by the top prior only.
    """

    def __init__(self, shape, scales_left: int, cfg: GlowConfig):
        super().__init__()
        C, H, W = shape
        c = 4 * C
        self.squeeze = Squeeze()
        steps = []
        for _ in range(cfg.steps_per_scale):
            net = coupling_net(c - c // 2, cfg.hidden_channels, 2 * (c // 2))
            steps += [ActNorm(c), InvertibleConv1x1(c, cfg.lu), ChannelCoupling(net, cfg.coupling == "affine")]
        self.steps = Sequential(*steps)
        last = scales_left <= 1 or (H // 2) % 2 or (W // 2) % 2
        self.split = None if last else SplitPrior(c)
        self.inner = None if last else GlowScale((c - c // 2, H // 2, W // 2), scales_left - 1, cfg)
        self.top = TopPrior(c, cfg.num_classes) if last else None

    def forward(self, x, y=None):
        h, _ = self.squeeze(x)  # (B, 4C, H/2, W/2)
        h, logdet = self.steps(h)
        if self.top is not None:
            h, ld = self.top(h, y)
            return self.squeeze.inverse(h)[0], logdet + ld
        h, ld = self.split(h)  # the prior of the first half, given the second before it goes on
        half = self.split.half
        rest, ld_inner = self.inner(h[:, half:], y)
        return self.squeeze.inverse(torch.cat([h[:, :half], rest], 1))[0], logdet + ld + ld_inner

    def inverse(self, z, y=None):
        h, _ = self.squeeze(z)
        if self.top is not None:
            h, logdet = self.top.inverse(h, y)
        else:
            half = self.split.half
            rest, logdet = self.inner.inverse(h[:, half:], y)
            h, ld = self.split.inverse(torch.cat([h[:, :half], rest], 1))
            logdet = logdet + ld
        h, ld = self.steps.inverse(h)
        return self.squeeze.inverse(h)[0], logdet + ld


@register
class Glow(Flow):
    """Glow (Kingma & Dhariwal 2018): ActNorm, invertible 1x1 convolutions, couplings, multi-scale, a bound."""

    name = "glow"
    Config = GlowConfig

    def __init__(self, config: GlowConfig):
        super().__init__(config)
        self.transform = GlowScale(config.image_shape, config.num_scales, config)
        self.prior = StandardNormal()
        # Centred as section 5 preprocesses (log-det 0), or RealNVP's logit (its log-det counted).
        self.logit = Logit(config.logit_alpha) if config.logit_alpha else None

    def forward(self, u, y=None):
        """u: float [B, C, H, W] in [0, 1) -> (eps [B, C, H, W], log |det d eps / du| [B])."""
        if self.logit is None:
            return self.transform(u - 0.5, y)
        h, logdet = self.logit(u)
        eps, ld = self.transform(h, y)
        return eps, logdet + ld

    def inverse(self, z, y=None):
        h = self.transform.inverse(z, y)[0]
        return h + 0.5 if self.logit is None else self.logit.inverse(h)[0]
