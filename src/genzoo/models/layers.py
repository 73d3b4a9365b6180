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
    """[n] group index of each of n feature channels: contiguous blocks, one per image channel."""
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
