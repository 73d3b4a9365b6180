"""Masked layers shared by the autoregressive models.

Raster order over pixels, and within a pixel over channels (R before G before B):
a feature map's channels are split into C contiguous groups, group g "belonging" to
image channel g (van den Oord et al. 2016, PixelRNN section 3.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



def channel_groups(n: int, image_channels: int) -> torch.Tensor:
    """[n] group index of each of n feature channels: contiguous blocks, one per image channel.

    Any n works: the blocks are as even as n allows (64 features over R, G, B: 22, 21, 21), and
    every layer assigns its inputs and outputs by this same rule, so the masks stay causal
    whatever the width (tested at the default widths for C = 3)."""
    return torch.arange(n) * image_channels // n


class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution that sees only earlier pixels (and, at the centre, earlier channel groups).

    mask_type 'A' (first layer): the centre pixel's own channel group and later ones are hidden,
    so the output at pixel i never sees x_i. 'B' (later layers): the centre's own group is
    visible, which is safe because those features already exclude x_i.

    ``out_splits``: the output is that many equal chunks (e.g. the tanh and sigmoid halves of a
    gated unit), each laid out in channel groups of its own.

    The mask is applied as ``weight * mask`` inside forward, never by editing ``weight``.
    x: [B, in, H, W] -> [B, out, H, W].
    """

    def __init__(self, in_channels, out_channels, kernel_size, mask_type: str, image_channels: int = 1,
                 out_splits: int = 1, bias: bool = True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if mask_type not in ("A", "B") or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError("mask_type must be 'A' or 'B' and the kernel odd-sized")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        ci, cj = kh // 2, kw // 2
        mask = torch.ones(out_channels, in_channels, kh, kw)
        mask[:, :, ci + 1:, :] = 0  # rows below
        mask[:, :, ci, cj + 1:] = 0  # right of the centre, same row
        g_in = channel_groups(in_channels, image_channels)
        g_out = channel_groups(out_channels // out_splits, image_channels).repeat(out_splits)
        allowed = g_out[:, None] > g_in[None, :] if mask_type == "A" else g_out[:, None] >= g_in[None, :]
        mask[:, :, ci, cj] = allowed.float()
        self.register_buffer("mask", mask, persistent=False)
        self.mask_type = mask_type

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class VerticalConv2d(nn.Conv2d):
    """The vertical stack's convolution: output row i sees input rows i-p .. i (p = k // 2), columns j-p .. j+p.

    Kernel (p+1, k) over the input with p rows of zeros on top: nothing below row i is
    reachable, and no multiplications by masked-out zeros are wasted. Its features at row i
    include row i itself, so they may reach the horizontal stack only through
    :func:`shift_down`. x: [B, in, H, W] -> [B, out, H, W].
    """

    def __init__(self, in_channels, out_channels, kernel_size: int):
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and >= 3")
        p = kernel_size // 2
        super().__init__(in_channels, out_channels, (p + 1, kernel_size))
        self.pad = (p, p, p, 0)  # left, right, top, bottom

    def forward(self, x):
        return super().forward(F.pad(x, self.pad))


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (row 0 becomes zeros): row i then holds row i-1. [B, C, H, W] -> same."""
    return F.pad(x, (0, 0, 1, -1))


def output_head(channels: int, head_channels: int, C: int, k: int) -> nn.Sequential:
    """ReLU, 1x1, ReLU, 1x1 -> C*k logits, channel-masked ('B') so sub-pixel c sees only groups <= c."""
    return nn.Sequential(
        nn.ReLU(),
        MaskedConv2d(channels, head_channels, 1, "B", C),
        nn.ReLU(),
        MaskedConv2d(head_channels, C * k, 1, "B", C),
    )


def to_logits(out: torch.Tensor, C: int, k: int) -> torch.Tensor:
    """[B, C*k, H, W] head output (channel-major groups) -> logits [B, k, C, H, W]."""
    B, _, H, W = out.shape
    return out.view(B, C, k, H, W).transpose(1, 2)  # (B, k, C, H, W)


def effective_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight a (masked) convolution really applies: ``weight * mask`` where it has a mask."""
    mask = getattr(conv, "mask", None)
    return conv.weight * mask if mask is not None else conv.weight


class WindowConv:
    """One output position of a convolution at a time, for cached sampling: ``conv(x, i, j)`` -> [n, out].

    out[:, o] = bias[o] + sum_{c,a,b} weight[o, c, a, b] * x[:, c, i - top + a, j - left + b],
    with x zero outside [0, H) x [0, W) (zero padding). x: [n, in, H, W]; weight: [out, in, kh, kw].
    Rows below i are left out: every convolution here is causal in rows, so their weights are 0.
    The kernel cut to the image's edges is flattened once per kind of cut and kept (a sampling
    step used to copy the sliced weight anew: 37k floats a 3x3 layer of 64 channels, per pixel).
    The window is read in (row, column, channel) order, so a store kept channels-last
    (:func:`sampling_store`) gives it as a few contiguous runs: gathering it from a channels-first
    store cost 0.4 ms a layer and step, more than the arithmetic (bench/sampling.py --profile).
    """

    def __init__(self, weight: torch.Tensor, bias, top: int, left: int):
        self.weight, self.bias, self.top, self.left = weight, bias, top, left
        self.cuts = {}  # (first row, last row, first column, last column) of the kernel -> [out, in * rows * cols]

    def __call__(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        kh, kw = self.weight.shape[-2:]
        H, W = x.shape[-2:]
        r0, c0 = i - self.top, j - self.left
        ra, rb, ca, cb = max(r0, 0), min(r0 + kh, H, i + 1), max(c0, 0), min(c0 + kw, W)
        cut = (ra - r0, rb - r0, ca - c0, cb - c0)
        w = self.cuts.get(cut)
        if w is None:
            w = self.weight[:, :, cut[0]:cut[1], cut[2]:cut[3]].permute(0, 2, 3, 1)  # (out, rows, cols, in)
            w = self.cuts[cut] = w.flatten(1)  # (out, rows * cols * in)
        return F.linear(x[:, :, ra:rb, ca:cb].permute(0, 2, 3, 1).flatten(1), w, self.bias)  # (n, out)


def sampling_store(ref: torch.Tensor, n: int, channels: int, H: int, W: int) -> torch.Tensor:
    """Zeros [n, channels, H, W] laid out channels-last: where a cached sampler keeps a layer's
    activations pixel by pixel (one pixel's channels are one contiguous write, a window a few reads)."""
    return ref.new_zeros(n, H, W, channels).permute(0, 3, 1, 2)  # (n, channels, H, W), strides of (n, H, W, channels)


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row i right by i, so each diagonal of the image becomes a column (PixelRNN section 3.2).

    [B, C, H, W] -> [B, C, H, H + W - 1], zeros outside the band: out[..., i, i + j] = x[..., i, j].
    Done by padding and re-viewing (no per-row copies, whose backward would clone the whole
    map once per row): padded row i starts at flat i (W + H) = i (W + H - 1) + i, which is
    column i of row i at the shorter row length.
    """
    B, C, H, W = x.shape
    flat = F.pad(x, (0, H)).flatten(2)  # (B, C, H * (W + H))
    return flat[:, :, : H * (W + H - 1)].view(B, C, H, W + H - 1)


def unskew(x: torch.Tensor, W: int) -> torch.Tensor:
    """Inverse of :func:`skew`: [B, C, H, H + W - 1] -> [B, C, H, W]."""
    B, C, H, _ = x.shape
    flat = F.pad(x.flatten(2), (0, H))  # (B, C, H * (W + H)): row i of the result starts at i (W + H)
    return flat.view(B, C, H, W + H)[..., :W]


def pointwise(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 (masked) convolution as (weight [out, in], bias) for ``F.linear`` on one position's [n, in]."""
    return effective_weight(conv).flatten(1), conv.bias
