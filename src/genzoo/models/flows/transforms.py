"""Invertible transforms for normalizing flows, each a small module.

Every transform maps a batch x [B, ...] both ways and returns the log-determinant of its own
Jacobian, one number per example:

    forward(x) -> (y, logdet)      logdet = log |det dy/dx|       [B]
    inverse(y) -> (x, logdet)      logdet = log |det dx/dy| = -forward's

:class:`Sequential` composes them and sums the log-determinants (the chain rule), the way
nflows and zuko compose transforms. Change of variables (Dinh et al. 2015, eq. 1):

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|.

The tests check every log-determinant against ``torch.autograd.functional.jacobian`` and
``slogdet`` in float64, and every inverse against its forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import at_least_fp32


def sum_per_example(t: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [B], in fp32 at least (a log-det is a likelihood reduction)."""
    return at_least_fp32(t).flatten(1).sum(1)


class Transform(nn.Module):
    def forward(self, x):
        raise NotImplementedError

    def inverse(self, y):
        raise NotImplementedError


class Sequential(Transform):
    """f = f_n o ... o f_1; log |det J_f| = sum_i log |det J_{f_i}|."""

    def __init__(self, *transforms: Transform):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x):
        total = x.new_zeros(x.shape[0], dtype=at_least_fp32(x).dtype)
        for t in self.transforms:
            x, logdet = t(x)
            total = total + logdet
        return x, total

    def inverse(self, y):
        total = y.new_zeros(y.shape[0], dtype=at_least_fp32(y).dtype)
        for t in reversed(self.transforms):
            y, logdet = t.inverse(y)
            total = total + logdet
        return y, total


class AdditiveCoupling(Transform):
    """NICE (Dinh et al. 2015, eq. 4): y = x on the mask, y = x + m(x * mask) off it; log-det 0.

    mask: a 0/1 tensor of one example's shape (1: kept); net: any module from that shape to itself.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = net

    def forward(self, x):
        shift = self.net(x * self.mask) * (1 - self.mask)
        return x + shift, x.new_zeros(x.shape[0])

    def inverse(self, y):
        shift = self.net(y * self.mask) * (1 - self.mask)  # y * mask == x * mask
        return y - shift, y.new_zeros(y.shape[0])


class AffineCoupling(Transform):
    """RealNVP (Dinh et al. 2017, eq. 9): y = x on the mask, y = x * exp(s) + t off it.

    (s, t) = net(x * mask), the net returning 2 x one example's channels (s first). The scale is
    bounded, s = scale * tanh(s_raw) with a learned per-channel ``scale`` (initially 1), so that
    no step can blow up: the commonest cause of NaN losses in flows. The Jacobian is triangular
    (dy_kept/dx = I, dy_off/dx_off = diag(exp s)), so log |det J| = sum over the off-mask of s.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, channels: int):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = net
        self.scale = nn.Parameter(torch.ones(channels))

    def _scale_shift(self, kept):
        s_raw, t = self.net(kept).chunk(2, dim=1)
        view = (1, -1) + (1,) * (kept.dim() - 2)
        s = self.scale.view(view) * torch.tanh(s_raw) * (1 - self.mask)
        return s, t * (1 - self.mask)

    def forward(self, x):
        s, t = self._scale_shift(x * self.mask)
        return x * torch.exp(s) + t, sum_per_example(s)

    def inverse(self, y):
        s, t = self._scale_shift(y * self.mask)
        return (y - t) * torch.exp(-s), -sum_per_example(s)


class ChannelCoupling(Transform):
    """Glow's coupling (Kingma & Dhariwal 2018, table 1) on channel halves of [B, C, H, W]:
    x = [x_a, x_b] (x_a the first C // 2 channels), y_b = x_b and, from (s_raw, t) = net(x_b),

        affine:    y_a = (x_a + t) * s,  s = sigmoid(s_raw + 2),   log |det| = sum log s
        additive:  y_a = x_a + t,                                  log |det| = 0 (NICE's coupling)

    The sigmoid bounds the scale in (0, 1) and starts it near 0.88: openai/glow's stable form of
    the paper's s = exp(log s). net: [B, C - C // 2, H, W] -> [B, 2 (C // 2), H, W] (s_raw first).
    """

    def __init__(self, net: nn.Module, affine: bool = True):
        super().__init__()
        self.net, self.affine = net, affine

    def _scale_shift(self, x_b, half: int):
        s_raw, t = self.net(x_b).split(half, dim=1)
        return (torch.sigmoid(s_raw + 2.0) if self.affine else None), t

    def forward(self, x):
        half = x.shape[1] // 2
        x_a, x_b = x[:, :half], x[:, half:]
        s, t = self._scale_shift(x_b, half)
        if s is None:
            return torch.cat([x_a + t, x_b], 1), x.new_zeros(x.shape[0], dtype=at_least_fp32(x).dtype)
        return torch.cat([(x_a + t) * s, x_b], 1), sum_per_example(torch.log(s))

    def inverse(self, y):
        half = y.shape[1] // 2
        y_a, y_b = y[:, :half], y[:, half:]
        s, t = self._scale_shift(y_b, half)
        if s is None:
            return torch.cat([y_a - t, y_b], 1), y.new_zeros(y.shape[0], dtype=at_least_fp32(y).dtype)
        return torch.cat([y_a / s - t, y_b], 1), -sum_per_example(torch.log(s))


class InvertibleConv1x1(Transform):
    """Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018, section 3.2) on [B, C, H, W]:
    y = W x at every pixel, log |det| = H W log |det W| (eq. 9), W starting as a random rotation.

    ``lu`` (eq. 10): W = P L (U + diag(sign_s exp(log_s))) with P a fixed permutation, L unit
    lower-triangular and U strictly upper-triangular, so log |det W| = sum(log_s): O(C) instead of
    slogdet's O(C^3). Plain: W itself is the parameter. Both keep W in fp32 under autocast (the
    log-det is exact only for the W that runs).
    """

    def __init__(self, channels: int, lu: bool = True):
        super().__init__()
        self.lu = lu
        w = torch.linalg.qr(torch.randn(channels, channels))[0]  # a rotation: log |det| = 0 at the start
        if lu:
            P, L, U = torch.linalg.lu(w)
            s = torch.diagonal(U)
            self.register_buffer("permutation", P)
            self.register_buffer("sign_s", torch.sign(s))
            self.lower = nn.Parameter(torch.tril(L, -1))
            self.upper = nn.Parameter(torch.triu(U, 1))
            self.log_s = nn.Parameter(torch.log(s.abs()))
        else:
            self.weight = nn.Parameter(w)

    def _weight(self, device_type: str):
        """(W [C, C], log |det W|) computed in the parameters' dtype, outside autocast."""
        with torch.autocast(device_type, enabled=False):
            if not self.lu:
                return self.weight, torch.linalg.slogdet(self.weight)[1]
            eye = torch.eye(self.log_s.shape[0], dtype=self.log_s.dtype, device=self.log_s.device)
            L = torch.tril(self.lower, -1) + eye
            U = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
            return self.permutation @ L @ U, self.log_s.sum()

    def _conv(self, x, inverse: bool):
        C, hw = x.shape[1], x.shape[2] * x.shape[3]
        W, logdet = self._weight(x.device.type)
        if inverse:
            W, logdet = torch.linalg.inv(W), -logdet
        y = F.conv2d(x, W.to(x.dtype).view(C, C, 1, 1))
        return y, (hw * at_least_fp32(logdet)).expand(x.shape[0])

    def forward(self, x):
        return self._conv(x, inverse=False)

    def inverse(self, y):
        return self._conv(y, inverse=True)


class DiagonalScaling(Transform):
    """NICE's last layer (section 3.3): y = x * exp(s), log-det = sum(s). shape: one example's."""

    def __init__(self, shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return x * torch.exp(self.log_scale), sum_per_example(self.log_scale.expand_as(x))

    def inverse(self, y):
        return y * torch.exp(-self.log_scale), -sum_per_example(self.log_scale.expand_as(y))


class ActNorm(Transform):
    """Per-channel affine y = (x - b) * exp(log_s) (Kingma & Dhariwal 2018), for [B, C, H, W].

    Data-dependent initialisation: the first forward pass in training mode sets b and log_s so
    that the batch's output has zero mean and unit variance per channel. log-det = H W sum(log_s).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x):
        self.bias.copy_(x.mean(dim=(0, 2, 3), keepdim=True))
        self.log_scale.copy_(-torch.log(x.std(dim=(0, 2, 3), keepdim=True) + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not bool(self.initialized):
            self._initialize(x)
        hw = x.shape[2] * x.shape[3]
        return (x - self.bias) * torch.exp(self.log_scale), hw * sum_per_example(self.log_scale).expand(x.shape[0])

    def inverse(self, y):
        hw = y.shape[2] * y.shape[3]
        return y * torch.exp(-self.log_scale) + self.bias, -hw * sum_per_example(self.log_scale).expand(y.shape[0])


class Squeeze(Transform):
    """Space to channels (RealNVP section 3.6): [B, C, H, W] -> [B, 4C, H/2, W/2], a permutation: log-det 0."""

    def forward(self, x):
        B, C, H, W = x.shape
        y = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
        return y.reshape(B, 4 * C, H // 2, W // 2), x.new_zeros(B)

    def inverse(self, y):
        B, C4, H2, W2 = y.shape
        x = y.view(B, C4 // 4, 2, 2, H2, W2).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/2, 2, W/2, 2)
        return x.reshape(B, C4 // 4, 2 * H2, 2 * W2), y.new_zeros(B)


class Logit(Transform):
    """The logit preprocessing of dequantized pixels (RealNVP section 4.1), u in [0, 1):

    p = alpha + (1 - 2 alpha) u,  y = log p - log(1 - p),
    log |det| = sum [log(1 - 2 alpha) - log p - log(1 - p)].
    alpha keeps p away from 0 and 1, where the logit is infinite.
    """

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, u):
        p = self.alpha + (1 - 2 * self.alpha) * u
        y = torch.log(p) - torch.log1p(-p)
        return y, sum_per_example(math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p))

    def inverse(self, y):
        p = torch.sigmoid(y)
        u = (p - self.alpha) / (1 - 2 * self.alpha)
        return u, -sum_per_example(math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p))


class MultiScale(Transform):
    """RealNVP's multi-scale architecture (section 3.6), keeping z one tensor of x's shape.

    One scale: ``before`` (checkerboard couplings at [C, H, W]), squeeze, ``after`` (channel-wise
    couplings at [4C, H/2, W/2]), then half of the channels are factored out (they go to the
    prior as they are) and ``inner`` (the next scale) transforms the other half; the two halves
    are put back together and un-squeezed, so each factored-out part stays in place.
    The last scale is ``before`` alone (``after`` and ``inner`` None).
    """

    def __init__(self, before: Transform, after: Transform | None = None, inner: Transform | None = None):
        super().__init__()
        self.before, self.after, self.inner, self.squeeze = before, after, inner, Squeeze()

    def forward(self, x):
        x, logdet = self.before(x)
        if self.after is None:
            return x, logdet
        x, _ = self.squeeze(x)  # (B, 4C, H/2, W/2)
        x, ld = self.after(x)
        logdet = logdet + ld
        if self.inner is not None:
            out, rest = x.chunk(2, dim=1)  # factor out the first half
            rest, ld = self.inner(rest)
            x, logdet = torch.cat([out, rest], dim=1), logdet + ld
        return self.squeeze.inverse(x)[0], logdet

    def inverse(self, z):
        if self.after is None:
            return self.before.inverse(z)
        z, _ = self.squeeze(z)
        logdet = z.new_zeros(z.shape[0])
        if self.inner is not None:
            out, rest = z.chunk(2, dim=1)
            rest, logdet = self.inner.inverse(rest)
            z = torch.cat([out, rest], dim=1)
        z, ld = self.after.inverse(z)
        x, ld2 = self.before.inverse(self.squeeze.inverse(z)[0])
        return x, logdet + ld + ld2


def checkerboard_mask(shape, parity: int) -> torch.Tensor:
    """[C, H, W] 0/1: 1 where (i + j) % 2 == parity, for every channel."""
    C, H, W = shape
    ij = torch.arange(H)[:, None] + torch.arange(W)[None, :]
    return ((ij % 2) == parity).float().expand(C, H, W).clone()


def channel_mask(shape, parity: int) -> torch.Tensor:
    """[C, H, W] 0/1: the first half of the channels (parity 0) or the second (parity 1)."""
    C, H, W = shape
    m = torch.zeros(C, H, W)
    m[: C // 2] = 1
    return m if parity == 0 else 1 - m


def alternating_mask(dims: int, parity: int) -> torch.Tensor:
    """[D] 0/1 over a flat vector: even indices (parity 0) or odd ones (NICE section 5.1)."""
    return ((torch.arange(dims) % 2) == parity).float()


def coupling_mlp(in_features: int, hidden: int, num_hidden: int, out_features: int) -> nn.Sequential:
    """A coupling's network on flat vectors: ``num_hidden`` ReLU layers of ``hidden`` units, then a
    linear layer that starts at zero, so every coupling starts as the identity (stable first steps).
    [B, in_features] -> [B, out_features]."""
    layers, width = [], in_features
    for _ in range(num_hidden):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def log_density(transform: Transform, prior, x: torch.Tensor) -> torch.Tensor:
    """The change of variables: log p_X(x) = log p_Z(f(x)) + log |det df/dx|, [B] nats."""
    z, logdet = transform(x)
    return prior.log_prob(z) + logdet


# ----------------------------------------------------------------------------- priors

class StandardNormal(nn.Module):
    """log N(z; 0, I) summed per example: -0.5 (z^2 + log 2 pi)."""

    def log_prob(self, z):
        return sum_per_example(-0.5 * (z**2 + math.log(2 * math.pi)))

    def sample(self, shape, generator=None, dtype=torch.float32, device="cpu"):
        return torch.randn(shape, generator=generator, dtype=dtype).to(device)


class StandardLogistic(nn.Module):
    """NICE's prior (section 3.4): log p(z) = -(softplus(z) + softplus(-z)) per dimension."""

    def log_prob(self, z):
        return sum_per_example(-(F.softplus(z) + F.softplus(-z)))

    def sample(self, shape, generator=None, dtype=torch.float32, device="cpu"):
        u = torch.rand(shape, generator=generator, dtype=dtype).clamp(1e-6, 1 - 1e-6)
        return (torch.log(u) - torch.log1p(-u)).to(device)


class UniformUnitCube(nn.Module):
    """Density 1 on [0, 1)^D: with the identity transform a flow is exactly uniform dequantized noise
    (-log P(x) = D log k, i.e. log2 k bits/dim): the check of the bits/dim bookkeeping."""

    def log_prob(self, z):
        inside = ((z >= 0) & (z < 1)).flatten(1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(at_least_fp32(z).dtype)

    def sample(self, shape, generator=None, dtype=torch.float32, device="cpu"):
        return torch.rand(shape, generator=generator, dtype=dtype).to(device)


PRIORS = {"gaussian": StandardNormal, "logistic": StandardLogistic, "uniform": UniformUnitCube}
