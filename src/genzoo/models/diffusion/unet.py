"""A small U-Net for denoising: residual blocks conditioned on an embedding (of the diffusion time
and the class), self-attention at the lowest resolution, skip connections between the two halves.

In the line of Ho et al. 2020 (DDPM, appendix B) and Kingma et al. 2021 (VDM), sized for a CPU:
widths (c, 2c, 2c, ...) over ``resolutions`` levels, each level ``num_res_blocks`` blocks.
Any image size works: a stride-2 convolution rounds up, and the way back up is resized to the
skip's exact size. The output convolution starts at zero, so an untrained net predicts no noise.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..base import ImageConfig, require, require_positive_ints


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of scalars t [B] (e.g. time in [0, 1], scaled by 1000): [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=t.dtype) / max(half - 1, 1))
    args = 1000 * t[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.sin(), args.cos()], dim=1)


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x))) + emb))): [B, cin, H, W] -> [B, cout, H, W]."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(self.dropout(F.silu(self.norm2(h))))


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions, residual: [B, C, H, W] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm, self.qkv, self.proj = group_norm(channels), nn.Conv2d(channels, 3 * channels,
                                                                         1), nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # (B, HW, C) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(y.transpose(1, 2).reshape(B, C, H, W))


class UNet(nn.Module):
    """eps_hat(z, t, y): z [B, cin, H, W] float, t [B] in [0, 1], y [B] class ids (num_classes = none)
    or None -> [B, cout, H, W]."""

    def __init__(self, cin: int, cout: int, channels: int, resolutions: int, num_res_blocks: int, attention: bool,
                 num_classes: int = 0, dropout: float = 0.0):
        super().__init__()
        emb = 4 * channels
        self.channels = channels
        self.time = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        # a conditional model has one more class, "none", for classifier-free guidance
        self.classes = nn.Embedding(num_classes + 1, emb) if num_classes else None
        widths = [channels * min(2 ** i, 2) for i in range(resolutions)]  # (c, 2c, 2c, ...)
        self.inp = nn.Conv2d(cin, channels, 3, padding=1)
        self.down, self.downsample, skips, w = nn.ModuleList(), nn.ModuleList(), [channels], channels
        for i, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(w, width, emb, dropout))
                w = width
                skips.append(w)
            self.down.append(blocks)
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(w, w, 3, stride=2, padding=1))
            if not last:
                skips.append(w)
        self.mid = nn.ModuleList([ResBlock(w, w, emb, dropout), ResBlock(w, w, emb, dropout)])
        self.attn = Attention(w) if attention else nn.Identity()
        self.up = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):  # one more than going down: the downsampled map's skip too
                blocks.append(ResBlock(w + skips.pop(), width, emb, dropout))
                w = width
            self.up.append(blocks)
        self.out_norm, self.out = group_norm(w), nn.Conv2d(w, cout, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embedding(self, t, y):
        e = self.time(sinusoidal(t, self.channels))
        return e if self.classes is None else e + self.classes(y)

    def forward(self, z, t, y=None):
        emb = self.embedding(t, y)
        h = self.inp(z)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid[1](self.attn(self.mid[0](h, emb)), emb)
        for blocks in self.up:
            for block in blocks:
                skip = hs.pop()
                if h.shape[-2:] != skip.shape[-2:]:
                    h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
                h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))


@dataclasses.dataclass
class UNetConfig(ImageConfig):
    """The U-Net's options, the first of every config of a model with this network (diffusion, masked diffusion)."""

    channels: int = 32  # the U-Net's width at full resolution (2x below it)
    resolutions: int = 3  # U-Net levels: the image, then halved (resolutions - 1) times
    num_res_blocks: int = 1  # residual blocks per U-Net level on the way down (one more on the way up)
    attention: bool = True  # self-attention at the lowest resolution
    dropout: float = 0.0  # inside the residual blocks

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "channels", "resolutions", "num_res_blocks")
        require(0 <= self.dropout < 1, "dropout must be in [0, 1)")

    def unet(self, cin: int, cout: int) -> UNet:
        """The network these options describe, cin channels in and cout out (class-conditional where the config
        has num_classes > 0)."""
        return UNet(cin, cout, self.channels, self.resolutions, self.num_res_blocks, self.attention,
                    getattr(self, "num_classes", 0), self.dropout)
