"""Normalizing flows on images: NICE and RealNVP on the image flow of ``flow_base`` (Glow, on the same ``Flow``,
is ``glow.py``).

* NICE: Dinh, Krueger & Bengio, "NICE: Non-linear Independent Components Estimation", ICLR
  2015 workshop (arXiv:1410.8516): additive couplings y2 = x2 + m(x1) of MLPs on the flattened
  image, alternating halves, volume preserving (log-det 0), then a diagonal scaling
  (log-det = sum of log-scales); a logistic prior. Published: 4.36 bits/dim on 8-bit MNIST.
* RealNVP: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017
  (arXiv:1605.08803): affine couplings y2 = x2 exp(s(x1)) + t(x1) with ResNet s, t, on
  checkerboard then channel-wise masks, squeezes, and a multi-scale architecture that factors
  out half of the dimensions at each scale; a logit preprocessing; a Gaussian prior.
  Published: 1.06 bits/dim on 8-bit MNIST.

Both are continuous densities on u = (x + noise) / k in [0, 1)^D (uniform dequantization,
noise ~ U[0, 1)^D), so the discrete image gets the bound (docs/CONTRACT.md)

    -log P(x) <= E_noise[-log p(u)] + D log k,      log p(u) = log p_Z(f(u)) + log |det df/du|,

``likelihood_kind = "bound"``. ``forward(u)`` returns z (one tensor of u's shape; factored-out
parts stay in place) and the log-det of everything from u, the logit included.

The shipped RealNVP (pretrained/realnvp-fashion-mnist, one hour on the 2-core AVX2 CPU, <= 3.258
bits/dim): 32-channel ResNets of 2 blocks whose checkerboard couplings run on the space-to-depth
image (``--space-to-depth``: 2.2-3.1x the images/s of the full-resolution nets here, same masks
and determinants). Its recipe is code, in ``genzoo/recipes.py`` (``genzoo reproduce
realnvp-fashion-mnist``); docs/RESULTS.md has the curve and the 4-minute figures of both flows.
The papers' own figures (NICE 4.36, RealNVP 1.06 bits/dim on MNIST) used wider nets for far
longer, on GPUs; nothing here has reproduced them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..base import ImageConfig, require, require_positive_ints
from ..registry import register
from .flow_base import Flow
from .transforms import (PRIORS, ActNorm, AdditiveCoupling, AffineCoupling, DiagonalScaling, Logit, MultiScale,
                         Sequential, alternating_mask, channel_mask, checkerboard_mask, coupling_mlp)


def _prior(name: str):
    require(name in PRIORS, f"prior must be one of {', '.join(PRIORS)}, got {name!r}")
    return PRIORS[name]()


@dataclasses.dataclass
class NICEConfig(ImageConfig):
    num_couplings: int = 4  # additive couplings, alternating the even and odd halves
    hidden_features: int = 512  # width of each coupling's MLP (1000 in the paper)
    num_hidden: int = 4  # hidden layers of each MLP (5 in the paper)
    choices: ClassVar[dict] = {"prior": ("logistic", "gaussian")}
    prior: str = "logistic"  # logistic (the paper's) or gaussian
    logit_alpha: float = 0.0  # > 0: the logit preprocessing first; 0: none (the paper's)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "num_couplings", "hidden_features", "num_hidden")
        require(self.prior in ("logistic", "gaussian"), f"prior must be logistic or gaussian, got {self.prior!r}")
        require(isinstance(self.logit_alpha, (int, float)) and 0 <= self.logit_alpha < 0.5,
                "logit_alpha must be in [0, 0.5)")


@register
class NICE(Flow):
    """NICE (Dinh et al. 2015): additive couplings + diagonal scaling, logistic prior, a bound."""

    name = "nice"
    Config = NICEConfig
    flat = True

    def __init__(self, config: NICEConfig):
        super().__init__(config)
        D = self.dims
        steps = [Logit(config.logit_alpha)] if config.logit_alpha else []
        steps += [AdditiveCoupling(alternating_mask(D, i % 2), coupling_mlp(D, config.hidden_features,
                                                                            config.num_hidden, D))
                  for i in range(config.num_couplings)]
        self.transform = Sequential(*steps, DiagonalScaling(D))
        self.prior = _prior(config.prior)


class ResNet(nn.Module):
    """The coupling network of RealNVP (section 4.1): 3x3 conv, residual blocks, 3x3 conv.

    [B, C, H, W] -> [B, 2C, H, W] (s_raw and t); the last convolution starts at zero, so
    every coupling starts as the identity. With ``space_to_depth`` the network runs at half the
    resolution: its input is squeezed to [B, 4C, H/2, W/2] (each 2x2 block's pixels as channels,
    nothing lost) and its output [B, 8C, H/2, W/2] un-squeezed back to [B, 2C, H, W]; the
    coupling around it, its mask and its determinant are unchanged, the convolutions cost a quarter.
    """

    def __init__(self, channels: int, hidden: int, num_blocks: int, space_to_depth: bool = False):
        super().__init__()
        self.space_to_depth = space_to_depth
        if space_to_depth:
            channels = 4 * channels
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                                                   nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1))
                                     for _ in range(num_blocks)])
        self.out = nn.Conv2d(hidden, 2 * channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        if self.space_to_depth:
            x = F.pixel_unshuffle(x, 2)  # (B, 4C, H/2, W/2), the same order as transforms.Squeeze
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        out = self.out(torch.relu(h))
        return F.pixel_shuffle(out, 2) if self.space_to_depth else out  # (B, 2C, H, W)


@dataclasses.dataclass
class RealNVPConfig(ImageConfig):
    num_scales: int = 2  # scales of the multi-scale architecture (fewer if H, W stop being even)
    hidden_channels: int = 64  # width of each coupling's ResNet
    num_blocks: int = 4  # residual blocks of each coupling's ResNet (8 in the paper)
    logit_alpha: float = 0.05  # the logit preprocessing's alpha (section 4.1)
    # the checkerboard couplings' ResNets run on the space-to-depth image (H/2 x W/2) where H and W
    # are even: a quarter of the convolution cost at full resolution, same masks and determinants
    space_to_depth: bool = False

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "num_scales", "hidden_channels", "num_blocks")
        require(isinstance(self.space_to_depth, bool), f"space_to_depth must be true or false, got "
                                                       f"{self.space_to_depth!r}")
        require(isinstance(self.logit_alpha, (int, float)) and 0 < self.logit_alpha < 0.5,
                "logit_alpha must be in (0, 0.5)")


@register
class RealNVP(Flow):
    """RealNVP (Dinh et al. 2017): affine couplings, multi-scale, logit preprocessing, Gaussian prior, a bound."""

    name = "realnvp"
    Config = RealNVPConfig

    def __init__(self, config: RealNVPConfig):
        super().__init__(config)
        self.transform = Sequential(Logit(config.logit_alpha), self._scale(config.image_shape, config.num_scales))
        self.prior = _prior("gaussian")

    def _couplings(self, shape, make_mask, parities, space_to_depth=False):
        cfg = self.config
        steps = []
        for p in parities:
            net = ResNet(shape[0], cfg.hidden_channels, cfg.num_blocks, space_to_depth)
            steps += [ActNorm(shape[0]), AffineCoupling(make_mask(shape, p), net, shape[0])]
        return Sequential(*steps)

    def _scale(self, shape, scales_left: int) -> MultiScale:
        """Checkerboard x3, squeeze, channel-wise x3, factor out half, recurse; the last scale: checkerboard x4."""
        C, H, W = shape
        # the channel-wise couplings already work on a squeezed image; a checkerboard's net can be squeezed
        s2d = self.config.space_to_depth and H % 2 == 0 and W % 2 == 0
        if scales_left <= 1 or H % 2 or W % 2:
            return MultiScale(self._couplings(shape, checkerboard_mask, (0, 1, 0, 1), s2d))
        squeezed = (4 * C, H // 2, W // 2)
        return MultiScale(self._couplings(shape, checkerboard_mask, (0, 1, 0), s2d),
                          self._couplings(squeezed, channel_mask, (0, 1, 0)),
                          self._scale((2 * C, H // 2, W // 2), scales_left - 1))
