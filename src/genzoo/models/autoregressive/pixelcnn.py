"""PixelCNN and Gated PixelCNN.

* PixelCNN: van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks",
  ICML 2016 (arXiv:1601.06759), section 3.5: a 7x7 type-A masked convolution, residual
  blocks of 1x1 / 3x3 type-B / 1x1 masked convolutions (Fig. 5), two 1x1 layers and a
  k-way softmax per sub-pixel. Published: 81.30 nats on static binarized MNIST.
* Gated PixelCNN: van den Oord et al., "Conditional Image Generation with PixelCNN
  Decoders", NeurIPS 2016 (arXiv:1606.05328): a vertical stack (rows strictly above) and
  a horizontal stack (the current row, left of the pixel), joined by a 1x1 link from
  vertical to horizontal, so the receptive field has no blind spot; gated units
  y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h) (eq. 2-4), with h a one-hot class.

Neither published figure is reproduced here: on the 2-core CPU the default PixelCNN trains at
about 59 images/s (~14 minutes an epoch). The CPU recipes that were run, with their figures,
are the 4-minute family bench (bench/autoregressive.py, docs/RESULTS.md).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register
from .ar_base import AutoregressiveConfig, AutoregressiveModel, IncrementalSampler
from ..base import (require_num_classes, require_odd_kernels,
                   require_positive_ints)
from .layers import (MaskedConv2d, VerticalConv2d, WindowConv, effective_weight, output_head, pointwise, sampling_store,
                     shift_down, to_logits)


# ----------------------------------------------------------------------------- PixelCNN

@dataclasses.dataclass
class PixelCNNConfig(AutoregressiveConfig):
    hidden_channels: int = 64  # h: residual blocks run at 2h channels, their 3x3 at h (PixelRNN Fig. 5)
    num_layers: int = 7  # residual blocks after the 7x7 type-A layer
    first_kernel: int = 7  # size of the first, type-A masked convolution (7x7 in the paper)
    kernel: int = 3  # size of the type-B masked convolutions inside the residual blocks
    head_channels: int = 256  # channels of the two 1x1 layers before the per-pixel softmax

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_layers", "head_channels")
        require_odd_kernels(self, "first_kernel", "kernel")


class ResidualBlock(nn.Module):
    """x + [ReLU, 1x1 (2h->h), ReLU, kxk 'B' (h->h), ReLU, 1x1 (h->2h)](x). [B, 2h, H, W] -> same."""

    def __init__(self, h: int, kernel: int, C: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(), MaskedConv2d(2 * h, h, 1, "B", C),
            nn.ReLU(), MaskedConv2d(h, h, kernel, "B", C),
            nn.ReLU(), MaskedConv2d(h, 2 * h, 1, "B", C),
        )

    def forward(self, x):
        return x + self.net(x)


@register
class PixelCNN(AutoregressiveModel):
    """PixelCNN (van den Oord et al. 2016): masked convolutions, exact likelihood, raster sampling."""

    name = "pixelcnn"
    Config = PixelCNNConfig

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        C, h, k = config.image_shape[0], config.hidden_channels, self.output_size
        self.first = MaskedConv2d(C, 2 * h, config.first_kernel, "A", C)
        self.blocks = nn.Sequential(*[ResidualBlock(h, config.kernel, C) for _ in range(config.num_layers)])
        self.head = output_head(2 * h, config.head_channels, C, k)

    def outputs(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1] -> outputs [B, P, C, H, W]."""
        out = self.head(self.blocks(self.first(x)))  # (B, C*P, H, W)
        return to_logits(out, self.image_shape[0], self.output_size)

    def cached_sampler(self, n, y=None):
        return _PixelCNNSampler(self, n)


class _PixelCNNSampler(IncrementalSampler):
    """PixelCNN one pixel at a time: every layer computes only its output at the new pixel.

    The 1x1 convolutions need nothing stored; each kxk convolution (the first layer's on the
    image, each block's on its middle features) reads a window of stored earlier positions.
    Per pixel this is ~1/(H W) of a full pass (Ramachandran et al. 2017).
    """

    def __init__(self, model: PixelCNN, n: int):
        super().__init__(model)
        h, ref = model.config.hidden_channels, model.first.weight
        p0, p = model.config.first_kernel // 2, model.config.kernel // 2
        self.first = WindowConv(effective_weight(model.first), model.first.bias, p0, p0)
        self.blocks = [(pointwise(b.net[1]), WindowConv(effective_weight(b.net[3]), b.net[3].bias, p, p),
                        pointwise(b.net[5])) for b in model.blocks]
        self.mid = [sampling_store(ref, n, h, self.H, self.W) for _ in model.blocks]  # each block's kxk input

    def compute_pixel(self, x, i, j):
        v = self.first(x, i, j)  # (n, 2h)
        for ((w1, b1), conv, (w5, b5)), mid in zip(self.blocks, self.mid):
            mid[:, :, i, j] = F.relu(F.linear(F.relu(v), w1, b1))
            v = v + F.linear(F.relu(conv(mid, i, j)), w5, b5)
        return self.head_outputs(v)  # (n, P, C)


# ----------------------------------------------------------------------------- Gated PixelCNN

@dataclasses.dataclass
class GatedPixelCNNConfig(AutoregressiveConfig):
    hidden_channels: int = 64  # F: channels of each stack
    num_layers: int = 8  # gated layers (the first is type A)
    kernel: int = 5  # vertical stack covers kernel//2 rows above, horizontal kernel//2 pixels left
    first_kernel: int = 7  # size of the first, type-A layer (both stacks)
    head_channels: int = 256  # channels of the two 1x1 layers before the per-pixel softmax
    num_classes: int = 0  # > 0: class-conditional, h = one-hot label (eq. 4)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_layers", "head_channels")
        require_odd_kernels(self, "first_kernel", "kernel", minimum=3)
        require_num_classes(self)


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for x = [a; b] along channels (eq. 2). [B, 2F, H, W] -> [B, F, H, W]."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks (Fig. 2 of the Gated PixelCNN paper).

    v: [B, Fv, H, W] features of rows <= i (the vertical stack); h: [B, Fh, H, W] features
    of rows above and the current row up to the pixel (type 'A': excluding it). The link
    takes v shifted one row down, so h at row i only ever sees v of rows < i. Returns (v', h').
    """

    def __init__(self, in_channels: int, F_: int, kernel: int, mask_type: str, C: int, num_classes: int):
        super().__init__()
        self.vertical = VerticalConv2d(in_channels, 2 * F_, kernel)
        self.horizontal = MaskedConv2d(in_channels, 2 * F_, (1, kernel), mask_type, C, out_splits=2)
        self.link = nn.Conv2d(2 * F_, 2 * F_, 1)  # v -> h, unmasked: it is fed v shifted down a row
        self.out = MaskedConv2d(F_, F_, 1, "B", C)
        self.residual = mask_type == "B"
        self.cond = nn.Linear(num_classes, 4 * F_, bias=False) if num_classes else None

    def forward(self, v, h, cond=None):
        v_pre = self.vertical(v)  # (B, 2F, H, W)
        h_pre = self.horizontal(h) + self.link(shift_down(v_pre))
        if self.cond is not None:
            cv, ch = self.cond(cond)[:, :, None, None].chunk(2, dim=1)  # (B, 2F, 1, 1) each
            v_pre, h_pre = v_pre + cv, h_pre + ch
        h_new = self.out(gate(h_pre))
        return gate(v_pre), (h + h_new if self.residual else h_new)


@register
class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN (van den Oord et al. 2016b): vertical + horizontal stacks, no blind spot, optional classes."""

    name = "gated-pixelcnn"
    Config = GatedPixelCNNConfig

    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__(config)
        C, F_, k = config.image_shape[0], config.hidden_channels, self.output_size
        self.layers = nn.ModuleList(
            [GatedLayer(C, F_, config.first_kernel, "A", C, config.num_classes)]
            + [GatedLayer(F_, F_, config.kernel, "B", C, config.num_classes) for _ in range(config.num_layers - 1)]
        )
        self.head = output_head(F_, config.head_channels, C, k)

    def outputs(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1], y: [B] labels or None -> outputs [B, P, C, H, W]."""
        cond = F.one_hot(y, self.num_classes).float() if self.num_classes else None
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return to_logits(self.head(h), self.image_shape[0], self.output_size)

    def cached_sampler(self, n, y=None):
        return _GatedPixelCNNSampler(self, n, y)


class _GatedPixelCNNSampler(IncrementalSampler):
    """Gated PixelCNN one pixel at a time.

    The horizontal stack runs per pixel: each layer's 1 x k masked convolution reads the stored
    features left of the pixel in its row, plus the link from the vertical stack one row up.
    The vertical stack depends on whole rows (it sees up to k//2 columns to the right), so it
    runs once a row is final (``finish_row``), one row of every layer.
    """

    def __init__(self, model: GatedPixelCNN, n: int, y):
        super().__init__(model)
        F_, ref = model.config.hidden_channels, model.head[1].weight
        self.layers = list(model.layers)
        self.v_in = [None] + [ref.new_zeros(n, F_, self.H, self.W) for _ in self.layers[1:]]  # vertical inputs
        self.h_in = [None] + [sampling_store(ref, n, F_, self.H, self.W) for _ in self.layers]  # horizontal inputs
        self.link = [ref.new_zeros(n, 2 * F_, self.H, self.W) for _ in self.layers]  # link(v_pre), by row
        self.horizontal = [WindowConv(effective_weight(L.horizontal), L.horizontal.bias, 0,
                                      L.horizontal.weight.shape[-1] // 2)
                           for L in self.layers]
        self.out = [pointwise(L.out) for L in self.layers]
        cond = F.one_hot(y, model.num_classes).to(ref.dtype) if model.num_classes else None
        self.cond = [L.cond(cond).chunk(2, dim=1) if cond is not None else (0, 0)
                     for L in self.layers]  # (cv, ch): [n, 2F] each, added to v_pre and h_pre

    def finish_row(self, x, i):
        for L, layer in enumerate(self.layers):
            p = layer.vertical.weight.shape[-1] // 2
            rows = (x if L == 0 else self.v_in[L])[:, :, max(0, i - p):i + 1]
            rows = F.pad(rows, (p, p, p + 1 - rows.shape[2], 0))  # the p rows above row i, zeros above the image
            v_pre = F.conv2d(rows, layer.vertical.weight, layer.vertical.bias)  # (n, 2F, 1, W)
            self.link[L][:, :, i:i + 1] = layer.link(v_pre)
            if L + 1 < len(self.layers):
                cv = self.cond[L][0]
                self.v_in[L + 1][:, :, i:i + 1] = gate(v_pre + (cv[:, :, None, None] if torch.is_tensor(cv) else 0))

    def compute_pixel(self, x, i, j):
        h = x
        for L, layer in enumerate(self.layers):
            link = self.link[L][:, :, i - 1, j] if i > 0 else layer.link.bias  # link(shift_down(v_pre))
            h_pre = self.horizontal[L](h, i, j) + link + self.cond[L][1]
            h_new = F.linear(gate(h_pre), *self.out[L])  # (n, F)
            self.h_in[L + 1][:, :, i, j] = h[:, :, i, j] + h_new if layer.residual else h_new
            h = self.h_in[L + 1]
        return self.head_outputs(h[:, :, i, j])  # (n, P, C)
