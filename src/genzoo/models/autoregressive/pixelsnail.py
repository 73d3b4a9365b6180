"""PixelSNAIL: Chen, Mishra, Rohaninejad & Abbeel, "PixelSNAIL: An Improved Autoregressive Generative Model",
ICML 2018 (arXiv:1712.09763; reference code neocxi/pixelsnail-public).

Blocks of (section 3, Fig. 3): ``num_resnet`` gated ResNet blocks of 2x2 down-right-shifted convolutions (the
"residual block" of PixelCNN++, ``shifted.py``), then a causal self-attention block: the query of pixel p is
a 1x1 projection (through a 1x1 gated block) of its features and a 2-channel background of pixel coordinates;
keys and values are projections of the features, the *image* and the background at every earlier pixel q < p
(strictly: they hold x_q), so one attention block gives every pixel the whole of its context, with no blind
spot; a "null" slot of key 0 and value 0 lets the first pixel attend to something. A 1x1 gated block mixes the
attention's output back in. The convolutions give sharp local context, the attention the whole image. The first
layer is PixelCNN++'s: a 1x3 convolution of the row above plus a 2x1 convolution of the column to the left, with
a ones channel appended to the image so that the zero padding marks the border. The output is PixelCNN++'s
joint logistic mixture per pixel (``shifted.pixel_outputs``).

Published: 2.85 bits/dim on CIFAR-10 and 3.80 on ImageNet 32x32 (256 filters, 12 blocks of 4 residual blocks,
keys 16, values 128). The defaults here are 32 filters, 2 blocks of 2, to learn in minutes on 2 cores.

Cached sampling computes one pixel at a time through every layer: the 2x2 convolutions read a window of stored
earlier activations (``layers.WindowConv``), the attention one query against the stored keys and values of the
pixels so far; the C sub-pixels of a pixel share that one step.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .ar_base import AutoregressiveConfig, AutoregressiveModel
from ..base import require, require_positive_ints
from .layers import WindowConv, pointwise, sampling_store, shift_down
from ..registry import register
from .shifted import (GatedResnet, PixelSampler, ShiftedConv2d, concat_elu, down_right_conv, gated_resnet_at,
                      pixel_outputs, pixel_params_size, pointwise_conv, shift_right, with_ones)


@dataclasses.dataclass
class PixelSNAILConfig(AutoregressiveConfig):
    output: str = "mixture"  # PixelCNN++'s discretized logistic mixture; softmax: k logits per channel
    hidden_channels: int = 32  # filters of the residual stream (paper: 256)
    num_blocks: int = 2  # residual + attention blocks (paper: 12)
    num_resnet: int = 2  # gated ResNet blocks before each attention (paper: 4)
    key_channels: int = 16  # keys and queries (paper: 16)
    value_channels: int = 32  # values (paper: 128)
    dropout: float = 0.0  # inside each gated block

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_blocks", "num_resnet", "key_channels", "value_channels")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")


def causal_attention(q, k, v):
    """Pixel t attends to the null slot and the pixels t' < t in raster order (strictly: keys hold the image).
    q, k: [B, dk, H, W], v: [B, dv, H, W] -> [B, dv, H, W]."""
    B, dv, H, W = v.shape
    q, k, v = [t.flatten(2).transpose(1, 2) for t in (q, k, v)]  # (B, T, d) each, T = H W
    # slot s holds pixel s - 1 (slot 0 the null, the last pixel's key is never needed): query t sees slots 0..t,
    # a plain causal mask (the fused kernel; 25% faster here than a [T, T + 1] boolean mask)
    k, v = F.pad(k, (0, 0, 1, -1)), F.pad(v, (0, 0, 1, -1))  # (B, T, d)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, T, dv)
    return out.transpose(1, 2).reshape(B, dv, H, W)


class SNAILBlock(nn.Module):
    """Residual blocks, then attention over [features, background]. ul: [B, F, H, W], background: [1, 2, H, W]."""

    def __init__(self, cfg: PixelSNAILConfig):
        super().__init__()
        F_, dk, dv = cfg.hidden_channels, cfg.key_channels, cfg.value_channels
        self.resnets = nn.ModuleList([GatedResnet(F_, down_right_conv, 0, cfg.dropout) for _ in range(cfg.num_resnet)])
        C = cfg.image_shape[0]
        self.kv_in = GatedResnet(F_ + C + 2, pointwise_conv, 0, cfg.dropout)
        self.q_in = GatedResnet(F_ + 2, pointwise_conv, 0, cfg.dropout)
        self.key, self.value = nn.Conv2d(F_ + C + 2, dk, 1), nn.Conv2d(F_ + C + 2, dv, 1)
        self.query = nn.Conv2d(F_ + 2, dk, 1)
        self.mix = GatedResnet(F_, pointwise_conv, dv, cfg.dropout)

    def query_of(self, ul, background):
        """The query [B, dk, H, W] of [ul, background] (1x1 layers: any H, W, one pixel included)."""
        return self.query(self.q_in(torch.cat([ul, background.expand(ul.shape[0], -1, -1, -1)], dim=1)))

    def key_value_of(self, ul, x, background):
        """(key [B, dk, H, W], value [B, dv, H, W]) of [ul, x, background] at pixels that later ones attend to."""
        kv = self.kv_in(torch.cat([ul, x, background.expand(ul.shape[0], -1, -1, -1)], dim=1))
        return self.key(kv), self.value(kv)

    def forward(self, ul, x, background):
        for resnet in self.resnets:
            ul = resnet(ul)
        return self.mix(ul, causal_attention(self.query_of(ul, background), *self.key_value_of(ul, x, background)))


@register
class PixelSNAIL(AutoregressiveModel):
    """PixelSNAIL (Chen et al. 2018): gated residual convolutions interleaved with causal self-attention."""

    name = "pixelsnail"
    Config = PixelSNAILConfig

    def __init__(self, config: PixelSNAILConfig):
        super().__init__(config)
        C, H, W = config.image_shape
        F_ = config.hidden_channels
        self.in_down = ShiftedConv2d(C + 1, F_, (1, 3), right=False)  # fed the image a row down: the row above
        self.in_right = ShiftedConv2d(C + 1, F_, (2, 1), right=True)  # fed it a column right: the pixels left
        self.blocks = nn.ModuleList([SNAILBlock(config) for _ in range(config.num_blocks)])
        self.out = nn.Conv2d(F_, pixel_params_size(self), 1)
        rows = (torch.arange(H) + 0.5) / H - 0.5
        cols = (torch.arange(W) + 0.5) / W - 0.5
        background = torch.stack([rows[:, None].expand(H, W), cols[None, :].expand(H, W)])[None]  # (1, 2, H, W)
        self.register_buffer("background", background, persistent=False)

    def first(self, x):
        """The first layer on x [B, C, H', W] -> [B, F, H', W] (a ones channel marks the image)."""
        xp = with_ones(x)  # (B, C + 1, H', W)
        return self.in_down(shift_down(xp)) + self.in_right(shift_right(xp))

    def pixel_params(self, x, y=None):
        """x: float [B, C, H', W] in [-1, 1] (H' <= H: the first rows) -> the pixel-level output [B, Q, H', W]."""
        ul = self.first(x)
        background = self.background[:, :, :x.shape[2]].to(x.dtype)
        for block in self.blocks:
            ul = block(ul, x, background)
        return self.out(F.elu(ul))

    def outputs(self, x, y=None):
        """x: float [B, C, H', W] in [-1, 1] -> outputs [B, P, C, H', W]."""
        return pixel_outputs(self, self.pixel_params(x, y), x)

    def cached_sampler(self, n, y=None):
        return _PixelSNAILSampler(self, n)


class _PixelSNAILSampler(PixelSampler):
    """Every layer at one pixel: the 2x2 convolutions from stored windows (each gated block keeps the two inputs
    of its convolutions, [n, 2F, H, W] channels-last), the attention from stored keys and values [n, 1 + H W, d]
    (slot 0 the null). Pixel p's key and value hold x_p, so they are written at pixel p + 1, once x_p is drawn."""

    def __init__(self, model: PixelSNAIL, n: int):
        super().__init__(model)
        C, F_, cfg = self.C, model.config.hidden_channels, model.config
        ref = model.out.weight
        self.border = model.first(ref.new_zeros(1, C, self.H, self.W))[0]  # (F, H, W): biases + the ones channel
        self.in_down = WindowConv(model.in_down.weight[:, :C], None, 1, 1)  # reads row i - 1, columns j - 1 .. j + 1
        self.in_right = WindowConv(model.in_right.weight[:, :C], None, 1, 1)  # reads (i - 1, j - 1) and (i, j - 1)
        self.resnets = [[(WindowConv(r.conv1.weight, r.conv1.bias, 1, 1), WindowConv(r.conv2.weight, r.conv2.bias, 1,
                                                                                     1),
                          sampling_store(ref, n, 2 * F_, self.H, self.W), sampling_store(ref, n, 2 * F_, self.H,
                                                                                         self.W))
                         for r in block.resnets] for block in model.blocks]
        T = self.H * self.W
        self.keys = [ref.new_zeros(n, 1 + T, cfg.key_channels) for _ in model.blocks]
        self.values = [ref.new_zeros(n, 1 + T, cfg.value_channels) for _ in model.blocks]
        self.previous = [None for _ in model.blocks]  # each block's features entering attention at pixel p - 1

    def pixel_params(self, x, i, j):
        m, p, n = self.model, i * self.W + j, x.shape[0]
        ul = self.in_down(x, i, j) + self.in_right(x, i, j) + self.border[:, i, j]  # (n, F)
        here = m.background[0, :, i, j].to(ul.dtype).expand(n, -1)  # (n, 2)
        if p:
            pi, pj = divmod(p - 1, self.W)
            before = torch.cat([x[:, :, pi, pj], m.background[0, :, pi, pj].to(ul.dtype).expand(n, -1)],
                               dim=1)  # x_{p-1}
        for b, (block, resnets, keys, values) in enumerate(zip(m.blocks, self.resnets, self.keys, self.values)):
            for conv1, conv2, in1, in2 in resnets:  # GatedResnet.forward at one pixel
                in1[:, :, i, j] = concat_elu(ul)
                in2[:, :, i, j] = concat_elu(conv1(in1, i, j))
                a, g = conv2(in2, i, j).chunk(2, dim=1)
                ul = ul + a * torch.sigmoid(g)
            if p:  # SNAILBlock.key_value_of at pixel p - 1
                kv = gated_resnet_at(block.kv_in, torch.cat([self.previous[b], before], dim=1))
                keys[:, p], values[:, p] = F.linear(kv, *pointwise(block.key)), F.linear(kv, *pointwise(block.value))
            self.previous[b] = ul
            q = F.linear(gated_resnet_at(block.q_in, torch.cat([ul, here], dim=1)), *pointwise(block.query))  # (n, dk)
            weights = torch.softmax((keys[:, :p + 1] @ q[:, :, None])[:, :, 0] * q.shape[1] ** -0.5, dim=1)  # (n, p+1)
            attended = (weights[:, None] @ values[:, :p + 1])[:, 0]  # (n, dv)
            ul = gated_resnet_at(block.mix, ul, attended)
        return F.linear(F.elu(ul), *pointwise(m.out))  # (n, Q): 1x1 layers at a pixel as matrix products

