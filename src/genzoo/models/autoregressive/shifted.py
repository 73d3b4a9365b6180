"""What PixelCNN++ and PixelSNAIL share: shifted convolutions, the gated ResNet block, and one output per *pixel*.

Salimans, Karpathy, Chen & Kingma, "PixelCNN++", ICLR 2017 (arXiv:1701.05517); Chen, Mishra, Rohaninejad & Abbeel,
"PixelSNAIL", ICML 2018 (arXiv:1712.09763).

Shifted convolutions replace masks. A *down-shifted* convolution with kernel (kh, kw) pads kh - 1 rows above and
none below, so output row i reads input rows i - kh + 1 .. i (any column near j); a *down-right-shifted* one also
pads kw - 1 columns on the left and none on the right, so output (i, j) reads rows <= i and columns <= j. Fed the
image shifted one row down (the "down" stream: strictly the rows above) or one column right (the "down-right"
stream: also the row's pixels to the left), every feature at pixel (i, j) depends only on pixels before (i, j) and
never on the pixel itself. Such a network describes a whole pixel at once: its C channels are coupled by the
output layer, not by channel masks.

The output (section 2.2 of PixelCNN++): per pixel a mixture of K discretized logistics over the joint (R, G, B),
one set of mixture weights pi for the pixel, per channel a mean and a log-scale, and C(C-1)/2 coefficients making
the means of later channels linear in the earlier ones (mu_G + a r, mu_B + b r + c g, a, b, c = tanh(.)):

    P(r, g, b) = sum_k pi_k L(r; k) L(g; k, r) L(b; k, r, g).

genzoo's models are raster-order products over sub-pixels, so :func:`pixel_outputs` writes this joint mixture as
its exact conditionals: P(g | r) is the same mixture with the weights pi_k L(r; k) / P(r), i.e. weight logits
log pi_k + log L(r; k), and so on, which telescope back to the joint. ``--output softmax`` gives C k logits per
pixel, one categorical per channel (a channel then does not see the pixel's earlier channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import coupled_mean, discretized_logistic_log_prob
from .layers import pointwise, to_logits


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of [x, -x] along channels (PixelCNN++ section 2.6): [B, F, ..] -> [B, 2F, ..]."""
    return F.elu(torch.cat([x, -x], dim=1))


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (column 0 becomes zeros). [B, C, H, W] -> same."""
    return F.pad(x, (1, -1, 0, 0))


class ShiftedConv2d(nn.Conv2d):
    """Down-shifted (``right=False``) or down-right-shifted (``right=True``) convolution, stride 1 or 2.

    [B, in, H, W] -> [B, out, ceil(H / s), ceil(W / s)]; output (i, j) reads input rows s i - kh + 1 .. s i and
    columns s j - (kw - 1) // 2 .. s j + (kw - 1) // 2 (down) or s j - kw + 1 .. s j (down-right)."""

    def __init__(self, in_channels, out_channels, kernel, right: bool, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride)
        kh, kw = self.kernel_size
        self.pad = (kw - 1, 0, kh - 1, 0) if right else ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)

    def forward(self, x):
        return super().forward(F.pad(x, self.pad))


class ShiftedDeconv2d(nn.ConvTranspose2d):
    """Stride-2 transposed convolution that keeps the shift: kernel (2, 3) down, (2, 2) down-right.

    [B, in, h, w] -> [B, out, H, W] for any H <= 2h, W <= 2w (the skip connection's size): output row R reads input
    row R // 2 only (and column S // 2 only, down-right), whose features saw nothing at or after pixel (R, S)."""

    def __init__(self, in_channels, out_channels, right: bool):
        super().__init__(in_channels, out_channels, (2, 2) if right else (2, 3), stride=2)
        self.left = 0 if right else 1  # the (2, 3) kernel's output is 2w + 1 wide: drop one column each side

    def forward(self, x, size):
        H, W = size
        return super().forward(x)[:, :, :H, self.left:self.left + W]


class GatedResnet(nn.Module):
    """x + a * sigmoid(b), [a; b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(aux))))).

    PixelCNN++ section 2.6 (its gated_resnet). ``conv(in, out)`` builds both convolutions (shifted ones, or 1x1);
    ``aux_channels`` > 0 adds the 1x1 "nin" of an auxiliary input (the other stream, a skip, attention's output).
    x: [B, F, H, W], aux: [B, aux_channels, H, W] -> [B, F, H, W]."""

    def __init__(self, channels: int, conv, aux_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv1 = conv(2 * channels, channels)
        self.aux = nn.Conv2d(2 * aux_channels, channels, 1) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(2 * channels, 2 * channels)
        with torch.no_grad():  # start near the identity (the reference scales this layer's init by 0.1)
            self.conv2.weight.mul_(0.1)

    def forward(self, x, aux=None):
        c = self.conv1(concat_elu(x))
        if self.aux is not None:
            c = c + self.aux(concat_elu(aux))
        a, b = self.conv2(self.dropout(concat_elu(c))).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


def gated_resnet_at(R: GatedResnet, x: torch.Tensor, aux: torch.Tensor | None = None, conv1=None, conv2=None):
    """``GatedResnet.forward`` at one position, for a sampler: x [n, F], aux [n, A] or None -> [n, F].
    conv1, conv2: its two convolutions there, as functions of their input there ([n, 2F] -> [n, out]: a sampler's
    stored windows); by default 1x1 layers, as the matrix products they are at one position."""
    conv1 = conv1 or (lambda v: F.linear(v, *pointwise(R.conv1)))
    conv2 = conv2 or (lambda v: F.linear(v, *pointwise(R.conv2)))
    t = conv1(concat_elu(x))
    if R.aux is not None:
        t = t + F.linear(concat_elu(aux), *pointwise(R.aux))
    a, b = conv2(R.dropout(concat_elu(t))).chunk(2, dim=1)
    return x + a * torch.sigmoid(b)


def down_conv(in_channels: int, out_channels: int, stride: int = 1) -> ShiftedConv2d:
    """The 2x3 down-shifted convolution of PixelCNN++'s "down" stream."""
    return ShiftedConv2d(in_channels, out_channels, (2, 3), right=False, stride=stride)


def down_right_conv(in_channels: int, out_channels: int, stride: int = 1) -> ShiftedConv2d:
    """The 2x2 down-right-shifted convolution of the "down-right" stream (and of PixelSNAIL's blocks)."""
    return ShiftedConv2d(in_channels, out_channels, (2, 2), right=True, stride=stride)


def with_ones(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C + 1, H, W]: a ones channel, so that the zero padding of shifted convolutions marks
    the image's border (PixelCNN++'s x_pad)."""
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def pointwise_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """The 1x1 convolution ("nin") a GatedResnet is built with where it must not look at other pixels."""
    return nn.Conv2d(in_channels, out_channels, 1)


# ----------------------------------------------------------------------------- one output per pixel

def pixel_params_size(model) -> int:
    """Q, the numbers per pixel: C k logits (softmax) or K (1 + 2C + C(C-1)/2) for the joint mixture."""
    C, cfg = model.image_shape[0], model.config
    return C * cfg.levels if cfg.output == "softmax" else cfg.mixtures * (1 + 2 * C + C * (C - 1) // 2)


def pixel_outputs(model, params: torch.Tensor, x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """The pixel-level output params [B, Q, H, W] at inputs x [B, C, H, W] in [-1, 1] -> [B, P, C, H, W] per
    sub-pixel, as ``AutoregressiveModel.outputs`` gives them (module docstring). Channel c's outputs read only the
    pixel's channels < c of x. ``channels``: the first channels only (a sampler's step at channel c needs c + 1)."""
    C = model.image_shape[0]
    if model.config.output == "softmax":
        return to_logits(params, C, model.config.levels)[:, :, :channels]
    K, (B, _, H, W) = model.config.mixtures, params.shape
    logit_pi, rest = params[:, :K], params[:, K:]
    means, log_s, coeffs = rest[:, :C * K], rest[:, C * K:2 * C * K], rest[:, 2 * C * K:]  # coeffs: raw a's
    means, log_s = means.view(B, C, K, H, W), log_s.view(B, C, K, H, W).clamp(min=-7.0)  # the base's clamp
    levels = model.levels_of(x)  # (B, C, H, W)
    logits, per_channel = logit_pi, []
    channels = C if channels is None else channels
    for c in range(channels):
        first = c * (c - 1) // 2  # channel c's coefficients a_{c'c}, c' < c, follow those of the channels before
        mean = coupled_mean(means[:, c], [coeffs[:, (first + cp) * K:(first + cp + 1) * K] for cp in range(c)],
                            [x[:, cp:cp + 1] for cp in range(c)])  # (B, K, H, W)
        zeros = mean.new_zeros(B, (C - 1) * K, H, W)  # the base's own coupling is not used: it is in the mean
        per_channel.append(torch.cat([logits, mean, log_s[:, c], zeros], dim=1))  # (B, (2 + C) K, H, W)
        if c + 1 < channels:  # the posterior weights given this channel's level: log pi_k + sum log L(x_c'; k)
            logits = logits + discretized_logistic_log_prob(levels[:, c:c + 1], mean, log_s[:, c], model.levels)
    return torch.stack(per_channel, dim=2)  # (B, P, channels, H, W)


class PixelSampler:
    """Cached sampling for a pixel-level network: ``pixel_params(x, i, j) -> [n, Q]`` runs once per pixel, its
    C sub-pixels are served from it (their logits differ only through the pixel's earlier channels, read from x
    at the call). Calls come in raster order and may skip pixels (completion); ``pixel_params`` is called for
    every pixel in raster order, skipped ones included, so that a subclass may keep per-layer state."""

    def __init__(self, model):
        self.model, (self.C, self.H, self.W) = model, model.image_shape
        self.done, self.params = 0, None  # pixels computed; the last one's params

    def pixel_params(self, x, i, j) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, x, c, i, j) -> torch.Tensor:
        p = i * self.W + j
        while self.done <= p:
            self.params = self.pixel_params(x, *divmod(self.done, self.W))
            self.done += 1
        out = pixel_outputs(self.model, self.params[:, :, None, None], x[:, :, i:i + 1, j:j + 1],
                            c + 1)  # (n, P, c + 1, 1, 1)
        return self.model.pixel_log_probs(out[:, :, c, 0, 0], x[:, :, i, j], c)  # (n, k)
