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

Recipe toward the published binarized-MNIST figure (81.30 nats). It is NOT yet run to the
end: it needs a GPU (on the 2-core CPU, hidden 64 with 7 layers trains at 59 images/s,
~14 minutes an epoch; 12 layers is slower still). docs/RESULTS.md has what was measured:
    genzoo train pixelcnn --data binarized-mnist --out runs/pixelcnn \
        --hidden-channels 64 --num-layers 12 --head-channels 256 --epochs 50 --batch-size 128 --lr 1e-3
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .autoregressive import AutoregressiveModel
from .base import ImageConfig, require, require_channel_multiple, require_odd_kernels, require_positive_ints
from .layers import MaskedConv2d, VerticalConv2d, shift_down


def _output_head(channels: int, head_channels: int, C: int, k: int) -> nn.Sequential:
    """ReLU, 1x1, ReLU, 1x1 -> C*k logits, channel-masked ('B') so sub-pixel c sees only groups <= c."""
    return nn.Sequential(
        nn.ReLU(),
        MaskedConv2d(channels, head_channels, 1, "B", C),
        nn.ReLU(),
        MaskedConv2d(head_channels, C * k, 1, "B", C),
    )


def _to_logits(out: torch.Tensor, C: int, k: int) -> torch.Tensor:
    B, _, H, W = out.shape
    return out.view(B, C, k, H, W).transpose(1, 2)  # (B, k, C, H, W)


# ----------------------------------------------------------------------------- PixelCNN

@dataclasses.dataclass
class PixelCNNConfig(ImageConfig):
    hidden_channels: int = 64  # h: residual blocks run at 2h channels, their 3x3 at h (PixelRNN Fig. 5)
    num_layers: int = 7  # residual blocks after the 7x7 type-A layer
    first_kernel: int = 7
    kernel: int = 3
    head_channels: int = 256

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_layers", "head_channels")
        require_odd_kernels(self, "first_kernel", "kernel")
        require_channel_multiple(self, "hidden_channels")


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
        C, h, k = config.image_shape[0], config.hidden_channels, config.levels
        self.first = MaskedConv2d(C, 2 * h, config.first_kernel, "A", C)
        self.blocks = nn.Sequential(*[ResidualBlock(h, config.kernel, C) for _ in range(config.num_layers)])
        self.head = _output_head(2 * h, config.head_channels, C, k)

    def logits(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1] -> logits [B, k, C, H, W]."""
        out = self.head(self.blocks(self.first(x)))  # (B, C*k, H, W)
        return _to_logits(out, self.image_shape[0], self.levels)


# ----------------------------------------------------------------------------- Gated PixelCNN

@dataclasses.dataclass
class GatedPixelCNNConfig(ImageConfig):
    hidden_channels: int = 64  # F: channels of each stack
    num_layers: int = 8  # gated layers (the first is type A)
    kernel: int = 5  # vertical stack covers kernel//2 rows above, horizontal kernel//2 pixels left
    first_kernel: int = 7
    head_channels: int = 256
    num_classes: int = 0  # > 0: class-conditional, h = one-hot label (eq. 4)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_layers", "head_channels")
        require_odd_kernels(self, "first_kernel", "kernel", minimum=3)
        require(isinstance(self.num_classes, int) and self.num_classes >= 0, "num_classes must be >= 0")
        require_channel_multiple(self, "hidden_channels")


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
        C, F_, k = config.image_shape[0], config.hidden_channels, config.levels
        self.layers = nn.ModuleList(
            [GatedLayer(C, F_, config.first_kernel, "A", C, config.num_classes)]
            + [GatedLayer(F_, F_, config.kernel, "B", C, config.num_classes) for _ in range(config.num_layers - 1)]
        )
        self.head = _output_head(F_, config.head_channels, C, k)

    def logits(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1], y: [B] labels or None -> logits [B, k, C, H, W]."""
        cond = F.one_hot(y, self.num_classes).float() if self.num_classes else None
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return _to_logits(self.head(h), self.image_shape[0], self.levels)
