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

Sampling: every feature at a pixel is blind to the pixel, so the cached sampler computes once per pixel and
serves the C sub-pixels from it; the naive sampler runs the network once per sub-pixel on the rows so far. The
cached one computes only the pixel's row at every scale, from stored rows above (``_PixelCNNPPSampler``), not
the rows so far: about (i + 1)x less work at row i. A cache per pixel through the strided and transposed
convolutions (Ramachandran et al. 2017, Fast PixelCNN++) would cut it to one column; not done.
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
from .shifted import (GatedResnet, PixelSampler, ShiftedConv2d, ShiftedDeconv2d, concat_elu, down_conv,
                      down_right_conv, pixel_outputs, pixel_params_size, shift_right, with_ones)


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
    """``pixel_params`` on one row per scale: at pixel (i, j) every layer computes its output row i >> s (s its
    scale), reading the rows above from what it stored at earlier pixels. A shifted convolution's output row r
    reads its input rows s r - kh + 1 .. s r (s its stride), a transposed one's row R its input row R // 2 only,
    so the rows kept per layer are its input's last three. Why stored rows are right: no feature of row r depends
    on row r's last pixel (the down-right stream at (r, j) sees (r, < j)), which is the one drawn after the row's
    last computation; only the first layers read the image itself, and they read it from x at every call. The down
    stream u at row i reads only rows < i of the image, so it is computed at a row's first pixel and replayed."""

    def __init__(self, model: PixelCNNPP):
        super().__init__(model)
        self.rows = {}  # convolution -> {row index: its input's row [n, in, 1, W_s]}
        self.row, self.recorded, self.replay = None, [], None  # the down stream's values at row self.row

    def once_per_row(self, compute):
        """compute() at the row's first pixel; the value it gave then, in the same order, at the row's others."""
        if self.replay is not None:
            return next(self.replay)
        self.recorded.append(compute())
        return self.recorded[-1]

    def logits(self, x, c, i, j):
        if self.done < i * self.W + j:  # pixels skipped (known, in completion): a pass per earlier row stores it
            for r in range(self.done // self.W, i):  # (its pixels are final, and no feature reads its last one)
                self.row_params(x, r)
            self.done = i * self.W + j  # row i's skipped pixels: the pass at (i, j) computes the whole row
        return super().logits(x, c, i, j)

    def pixel_params(self, x, i, j):
        return self.row_params(x, i)[:, :, 0, j]  # (n, Q)

    def row_params(self, x, i):
        """PixelCNNPP.pixel_params at row i of every scale -> [n, Q, 1, W]; rows < i must have been computed."""
        m = self.model
        if i == self.row:
            self.replay = iter(self.recorded)
        else:
            self.row, self.recorded, self.replay = i, [], None
        xp = with_ones(x[:, :, max(0, i - 2):i + 1])  # (n, C + 1, <= 3, W): the image rows the first layers read
        xp = F.pad(xp, (0, 0, 3 - xp.shape[2], 0))  # rows i - 2 .. i, zeros above the image
        right = shift_right(_band_conv(m.ul_in[1], xp[:, :, 1:3]))  # ul_in[1] at row i: rows i - 1 .. i
        if i == 0:  # shift_down's zero row above the image (not the convolutions' biases)
            u, ul = torch.zeros_like(right), right
        else:  # shift_down(u_in(xp)) and shift_down(ul_in[0](xp)) at row i: their rows i - 1
            u = self.once_per_row(lambda: _band_conv(m.u_in, xp[:, :, 0:2]))
            ul = _band_conv(m.ul_in[0], xp[:, :, 1:2]) + right
        skips = [(u, ul)]
        for s, blocks in enumerate(m.up):
            if s:
                down_u, down_ul = m.downsample[s - 1]
                u = self.once_per_row(lambda: self.conv(down_u, u, i >> (s - 1), i >> s))
                ul = self.conv(down_ul, ul, i >> (s - 1), i >> s)
                skips.append((u, ul))
            for block in blocks:
                u, ul = self.block(block, u, ul, i >> s)
                skips.append((u, ul))
        u, ul = skips.pop()
        for s in reversed(range(len(m.down))):
            for block in m.down[s]:
                su, sul = skips.pop()
                u, ul = self.block(block, u, ul, i >> s, su, sul)
            if s:
                W_fine, R = skips[-1][0].shape[-1], i >> (s - 1)  # the finer scale's width and row
                u = self.once_per_row(lambda: _deconv_row(m.upsample[s - 1][0], u, R, W_fine))
                ul = _deconv_row(m.upsample[s - 1][1], ul, R, W_fine)
        return m.out(F.elu(ul))  # (n, Q, 1, W)

    def block(self, block, u, ul, r, skip_u=None, skip_ul=None):
        """StreamBlock.forward on row r of its scale."""
        u = self.once_per_row(lambda: self.resnet(block.u, u, skip_u, r))
        return u, self.resnet(block.ul, ul, u if skip_ul is None else torch.cat([u, skip_ul], 1), r)

    def resnet(self, R, x, aux, r):
        """GatedResnet.forward on row r: x [n, F, 1, W_s]."""
        c = self.conv(R.conv1, concat_elu(x), r, r)
        if R.aux is not None:
            c = c + R.aux(concat_elu(aux))
        a, b = self.conv(R.conv2, R.dropout(concat_elu(c)), r, r).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)

    def conv(self, M, row, r_in, r_out):
        """M's output row r_out [n, out, 1, W'] once its input's row r_in is ``row`` [n, in, 1, W_s] (stored)."""
        if not isinstance(M, ShiftedConv2d):
            return M(row)  # 1x1
        seen = self.rows.setdefault(M, {})
        seen[r_in] = row
        seen.pop(r_in - 3, None)
        kh, s = M.kernel_size[0], M.stride[0]
        band = [seen[r] if r >= 0 else torch.zeros_like(row) for r in range(s * r_out - kh + 1, s * r_out + 1)]
        return _band_conv(M, torch.cat(band, dim=2))


def _deconv_row(M: ShiftedDeconv2d, t: torch.Tensor, R: int, W: int) -> torch.Tensor:
    """Row R of a ShiftedDeconv2d's output (W wide) from its input's row R // 2, t [n, in, 1, w] -> [n, out, 1, W]."""
    return F.conv_transpose2d(t, M.weight, M.bias, stride=2)[:, :, R % 2:R % 2 + 1, M.left:M.left + W]


def _band_conv(M: ShiftedConv2d, band: torch.Tensor) -> torch.Tensor:
    """One output row of a shifted convolution from the kh input rows it reads: [n, in, kh, W] -> [n, out, 1, W']."""
    left, right = M.pad[0], M.pad[1]
    return F.conv2d(F.pad(band, (left, right, 0, 0)), M.weight, M.bias, stride=(1, M.stride[1]))
