"""PixelCNN++: Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with Discretized Logistic
Mixture Likelihood and Other Modifications", ICLR 2017 (arXiv:1701.05517; reference code openai/pixel-cnn).

The network (section 2.3-2.6, Fig. 2): two streams of shifted convolutions (``models/shifted.py``), a "down"
stream u that sees the rows above and a "down-right" stream ul that also sees the row's pixels to the left (the
two together have no blind spot); gated ResNet blocks with concat-ELU; ``num_scales`` resolutions, downsampled by
stride-2 shifted convolutions on the way up and upsampled by stride-2 transposed ones on the way down, every
block of the way up feeding the matching block of the way down (the U-Net-like short-cuts of section 2.4);
dropout inside the blocks (section 2.6). The output is one discretized logistic mixture per pixel over its joint
(R, G, B) with linear channel coupling (section 2.1-2.2), written as exact sub-pixel conditionals
(``shifted.pixel_outputs``). A ones channel is appended to the image so that the zero padding of the first
convolutions marks the border.

Published: 2.92 bits/dim on CIFAR-10 (160 filters, 5 blocks per stream and scale, 3 scales, 10 logistics,
dropout 0.5, several GPU-days). The defaults here are 32 filters and 2 blocks, to learn in minutes on 2 cores.

Sampling: every feature at a pixel is blind to the pixel, so the cached sampler runs the network once per pixel
(on the rows so far) and serves the C sub-pixels from that pass; the naive sampler runs it once per sub-pixel.
An incremental per-layer cache through the strided and transposed convolutions (Ramachandran et al. 2017) is
not done.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .autoregressive import AutoregressiveConfig, AutoregressiveModel
from .base import require, require_positive_ints
from .layers import shift_down
from .registry import register
from .shifted import (GatedResnet, PixelSampler, ShiftedConv2d, ShiftedDeconv2d, down_conv, down_right_conv,
                      pixel_outputs, pixel_params_size, shift_right, with_ones)


@dataclasses.dataclass
class PixelCNNPPConfig(AutoregressiveConfig):
    output: str = "mixture"  # the paper's discretized logistic mixture; softmax: k logits per channel
    hidden_channels: int = 32  # filters of both streams (paper: 160)
    num_resnet: int = 2  # gated ResNet blocks per stream and scale on the way up (paper: 5)
    num_scales: int = 3  # resolutions, each half the last (paper: 3, 32x32 -> 8x8)
    dropout: float = 0.0  # inside each block (paper: 0.5 on CIFAR-10; short CPU runs do not overfit)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_resnet", "num_scales")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")


class StreamBlock(nn.Module):
    """One gated block of each stream: u from u (+ aux_u), ul from ul and [u, aux_ul] (section 2.3).
    u, ul: [B, F, H, W]; aux_u: [B, F, H, W] or None; aux_ul: [B, F or 0, H, W]."""

    def __init__(self, F_: int, skip: bool, dropout: float):
        super().__init__()
        self.u = GatedResnet(F_, down_conv, F_ if skip else 0, dropout)
        self.ul = GatedResnet(F_, down_right_conv, 2 * F_ if skip else F_, dropout)

    def forward(self, u, ul, skip_u=None, skip_ul=None):
        u = self.u(u, skip_u)
        ul = self.ul(ul, u if skip_ul is None else torch.cat([u, skip_ul], 1))
        return u, ul


@register
class PixelCNNPP(AutoregressiveModel):
    """PixelCNN++ (Salimans et al. 2017): two shifted streams, gated blocks over 3 scales, logistic mixture."""

    name = "pixelcnn-pp"
    Config = PixelCNNPPConfig

    def __init__(self, config: PixelCNNPPConfig):
        super().__init__(config)
        C, F_, S, R = config.image_shape[0], config.hidden_channels, config.num_scales, config.num_resnet
        self.u_in = down_conv(C + 1, F_)  # (2, 3), then shifted a row down: strictly the rows above
        self.ul_in = nn.ModuleList([ShiftedConv2d(C + 1, F_, (1, 3), right=False),  # the row above ...
                                    ShiftedConv2d(C + 1, F_, (2, 1), right=True)])  # ... and the column left
        self.up = nn.ModuleList([nn.ModuleList([StreamBlock(F_, False, config.dropout) for _ in range(R)])
                                 for _ in range(S)])
        self.downsample = nn.ModuleList([nn.ModuleList([down_conv(F_, F_, 2), down_right_conv(F_, F_, 2)])
                                         for _ in range(S - 1)])
        # the way down: R blocks at the coarsest scale, R + 1 at the others (each taking one short-cut)
        self.down = nn.ModuleList([nn.ModuleList([StreamBlock(F_, True, config.dropout)
                                                  for _ in range(R + (s < S - 1))]) for s in range(S)])
        self.upsample = nn.ModuleList([nn.ModuleList([ShiftedDeconv2d(F_, F_, False), ShiftedDeconv2d(F_, F_, True)])
                                       for _ in range(S - 1)])
        self.out = nn.Conv2d(F_, pixel_params_size(self), 1)

    def pixel_params(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1] -> the pixel-level output [B, Q, H, W] (``shifted.pixel_params_size``)."""
        xp = with_ones(x)  # (B, C + 1, H, W)
        u = shift_down(self.u_in(xp))
        ul = shift_down(self.ul_in[0](xp)) + shift_right(self.ul_in[1](xp))
        skips = [(u, ul)]
        for s, blocks in enumerate(self.up):
            if s:
                u, ul = self.downsample[s - 1][0](u), self.downsample[s - 1][1](ul)
                skips.append((u, ul))
            for block in blocks:
                u, ul = block(u, ul)
                skips.append((u, ul))
        u, ul = skips.pop()
        for s in reversed(range(len(self.down))):
            for block in self.down[s]:
                su, sul = skips.pop()
                u, ul = block(u, ul, su, sul)
            if s:
                size = skips[-1][0].shape[-2:]  # the finer scale's size (odd sizes round up on the way up)
                u, ul = self.upsample[s - 1][0](u, size), self.upsample[s - 1][1](ul, size)
        return self.out(F.elu(ul))

    def outputs(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1] -> outputs [B, P, C, H, W]."""
        return pixel_outputs(self, self.pixel_params(x, y), x)

    def cached_sampler(self, n, y=None):
        return _PixelCNNPPSampler(self)


class _PixelCNNPPSampler(PixelSampler):
    """One pass of the network per pixel on rows 0..i (no layer looks below), not one per sub-pixel."""

    def logits(self, x, c, i, j):
        self.done = max(self.done, i * self.W + j)  # no per-layer state: skipped pixels need no work
        return super().logits(x, c, i, j)

    def pixel_params(self, x, i, j):
        return self.model.pixel_params(x[:, :, :i + 1])[:, :, i, j]  # (n, Q)
