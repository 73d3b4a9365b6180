"""The encoders and decoders of the latent models (autoencoders, the VAE, the VQ-VAE).

Two architectures for image [B, C, H, W] <-> vector [B, n]: ``mlp`` (two hidden layers of ``width``)
and ``conv`` (two stride-2 4x4 convolutions and their transposed mirror; H and W divisible by 4).
:class:`DiscreteImageLikelihood` is the decoder's distribution over the *discrete* image that the VAE
and the VQ-VAE share: Bernoulli (k = 2), a categorical per sub-pixel (k logits), or a discretized
logistic (Salimans et al. 2017, one component), so their figures are in nats of P(x).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import at_least_fp32, categorical_nll, discretized_logistic_log_prob, full_precision
from ..base import from_signed, require, require_positive_ints, to_unit

ARCHITECTURES = ("mlp", "conv")
DECODERS = ("auto", "bernoulli", "categorical", "logistic")
CATEGORICAL_MAX_LEVELS = 32


def auto_decoder(levels: int) -> str:
    """The decoder ``auto`` picks for k levels: bernoulli (k = 2), categorical (k <= 32), logistic (above)."""
    return "bernoulli" if levels == 2 else "categorical" if levels <= CATEGORICAL_MAX_LEVELS else "logistic"


class DiscreteImageLikelihood:
    """p(x | decoder output) over uint8 images of ``levels`` levels; ``kind`` one of DECODERS ("auto" resolved).
    The decoder's output ``out`` is [B, channels(C), H, W]: C logits (bernoulli), C k logits (categorical,
    channel-major), or C means and C log-scales on [-1, 1] (logistic)."""

    def __init__(self, kind: str, levels: int):
        self.kind = auto_decoder(levels) if kind == "auto" else kind
        self.levels = levels

    def channels(self, C: int) -> int:
        return {"bernoulli": C, "categorical": C * self.levels, "logistic": 2 * C}[self.kind]

    def log_prob(self, out, x):
        """log p(x | out) [B] for integer images x [B, C, H, W], in fp32 at least."""
        if self.kind == "categorical":
            B, _, H, W = out.shape
            return -categorical_nll(out.view(B, -1, self.levels, H, W).transpose(1, 2), x)
        with full_precision(out):  # likelihood reductions stay fp32 under bf16 training
            out = at_least_fp32(out)
            if self.kind == "bernoulli":
                return -F.binary_cross_entropy_with_logits(out, x.to(out.dtype), reduction="none").flatten(1).sum(1)
            mean, log_scale = out.chunk(2, dim=1)
            return discretized_logistic_log_prob(x, mean, log_scale.clamp(min=-7), self.levels).flatten(1).sum(1)

    def mean(self, out):
        """E[x | out] on the [0, 1] scale, float [B, C, H, W]."""
        if self.kind == "bernoulli":
            return torch.sigmoid(out)
        if self.kind == "categorical":
            B, _, H, W = out.shape
            p = torch.softmax(out.view(B, -1, self.levels, H, W), dim=2)
            expected = (p * torch.arange(self.levels, dtype=p.dtype, device=p.device).view(1, 1, -1, 1, 1)).sum(2)
            return to_unit(expected, self.levels, p.dtype)
        return ((out.chunk(2, dim=1)[0] + 1) / 2).clamp(0, 1)

    def sample(self, out, generator=None):
        """x ~ p(x | out): uint8 [B, C, H, W]."""
        device = out.device
        if self.kind == "bernoulli":
            u = torch.rand(out.shape, generator=generator, dtype=out.dtype).to(device)
            return (u < torch.sigmoid(out)).to(torch.uint8)
        if self.kind == "categorical":
            B, _, H, W = out.shape
            p = torch.softmax(out.view(B, -1, self.levels, H, W).movedim(2, -1).float(), dim=-1)  # (B, C, H, W, k)
            draw = torch.multinomial(p.reshape(-1, self.levels).cpu(), 1, generator=generator)
            return draw.view(p.shape[:-1]).to(torch.uint8).to(device)
        mean, log_scale = out.chunk(2, dim=1)
        u = torch.rand(mean.shape, generator=generator, dtype=out.dtype).clamp(1e-5, 1 - 1e-5).to(device)
        return from_signed(mean + torch.exp(log_scale.clamp(min=-7)) * (torch.log(u) - torch.log1p(-u)), self.levels)


def check_coder_config(cfg) -> None:
    """The options :func:`encoder` and :func:`decoder` take from a config: latent_dim, width, architecture."""
    require_positive_ints(cfg, "latent_dim", "width")
    require(cfg.architecture in ARCHITECTURES, f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                                               f"got {cfg.architecture!r}")
    _, H, W = cfg.image_shape
    require(cfg.architecture != "conv" or (H % 4 == 0 and W % 4 == 0),
            f"architecture conv needs H and W divisible by 4, got {H}x{W} (use mlp)")


def encoder(image_shape, out_features: int, architecture: str, width: int) -> nn.Sequential:
    """[B, C, H, W] float -> [B, out_features]. mlp: two hidden layers of ``width``; conv: two
    stride-2 4x4 convolutions (width, 2 width channels; H and W divisible by 4), then linear."""
    C, H, W = image_shape
    if architecture == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, out_features))
    return nn.Sequential(
        nn.Conv2d(C, width, 4, 2, 1), nn.ReLU(),  # (B, w, H/2, W/2)
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),  # (B, 2w, H/4, W/4)
        nn.Flatten(), nn.Linear(2 * width * (H // 4) * (W // 4), out_features))


def decoder(in_features: int, image_shape, out_channels: int, architecture: str, width: int) -> nn.Sequential:
    """[B, in_features] -> [B, out_channels, H, W] (unnormalised: logits or means), the mirror of :func:`encoder`."""
    C, H, W = image_shape
    if architecture == "mlp":
        return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, out_channels * H * W), nn.Unflatten(1, (out_channels, H, W)))
    return nn.Sequential(
        nn.Linear(in_features, 2 * width * (H // 4) * (W // 4)), nn.ReLU(),
        nn.Unflatten(1, (2 * width, H // 4, W // 4)),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # (B, w, H/2, W/2)
        nn.ConvTranspose2d(width, out_channels, 4, 2, 1))  # (B, out, H, W)
