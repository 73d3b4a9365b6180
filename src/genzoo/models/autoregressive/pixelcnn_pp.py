"""PixelCNN++: Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with Discretized Logistic
Mixture Likelihood and Other Modifications", ICLR 2017 (arXiv:1701.05517; reference code openai/pixel-cnn).

The network (section 2.3-2.6,
             Fig. 2): two streams of shifted convolutions (``models/autoregressive/shifted.py``), a "down"
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
cached one (``_PixelCNNPPSampler``) computes each layer's value at each position once, at the pixel that completes
it (Ramachandran et al. 2017, Fast PixelCNN++): the down-right stream a position at a time, the down stream,
blind to the pixel's row, a row at a time at the row's first pixel.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .ar_base import AutoregressiveConfig, AutoregressiveModel
from ..base import require, require_positive_ints
from .layers import pointwise, shift_down
from ..registry import register
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
        return _PixelCNNPPSampler(self, n)


class _PixelCNNPPSampler(PixelSampler):
    """``pixel_params`` one pixel at a time, each layer's value at each position computed once (Ramachandran et al.
    2017, Fast PixelCNN++, arXiv:1704.06001). A value of scale s at (r, c) depends on pixels up to (2^s r, 2^s c)
    only, so it is computed at that pixel: scale 0 at every pixel, scale s where i and j are multiples of 2^s.

    The down stream u sees only the rows above, so a row of it is computed at its row's first pixel, at every scale,
    from the rows above it stored then (a shifted convolution's output row r reads its input rows s r - 1 .. s r, s
    its stride; a transposed one's row R its input row R // 2). The down-right stream ul, which sees the pixel's row,
    goes a position at a time, and whatever of a position's value is known when its row starts is computed then for
    the whole row at once (``_ULBlock``, ``_RowWindow``): the part of each 2x2 convolution that reads the row above,
    its bias, and the u stream's part of each block's auxiliary input. A position then costs the current row's part
    of each convolution, one matrix product each. The transposed convolutions read one coarse position (output
    (R, S) reads input (R // 2, S // 2)). Why stored values are right: no feature at (r, c) depends on the image at or
    after the pixel it is computed at."""

    def __init__(self, model: PixelCNNPP, n: int):
        super().__init__(model)
        S, F_ = model.config.num_scales, model.config.hidden_channels
        widths = [self.W]
        for _ in range(S - 1):
            widths.append((widths[-1] + 1) // 2)  # a stride-2 shifted convolution rounds up
        ref = model.out.weight
        self.S, self.widths = S, widths
        self.rows = {}  # u's convolutions -> {row index: its input's row [n, in, 1, W_s]}
        sign = ref.new_tensor([1.0, -1.0]).view(2, 1)
        self.up = [[_ULBlock(b.ul, n, widths[s], sign, False) for b in model.up[s]] for s in range(S)]
        self.down = [[_ULBlock(b.ul, n, widths[s], sign, True) for b in model.down[s]] for s in range(S)]
        self.downsample = [_RowWindow(model.downsample[s][1], n, widths[s], widths[s + 1]) for s in range(S - 1)]
        self.deconv = [{(a, b): M.weight[:, :, a, b].contiguous() for a in range(2) for b in range(2)}
                       for M in (pair[1] for pair in model.upsample)]  # ul's upsampling: (in, out) per kernel tap
        self.deconv_bias = [pair[1].bias for pair in model.upsample]
        w = model.ul_in[1].weight  # (F, C + 1, 2, 1): the row above and the pixel's row, at the column left
        self.first = {2: w.flatten(1), 1: w[:, :, 1:].flatten(1)}  # by the count of image rows it reads
        self.first_bias, self.head = model.ul_in[1].bias, pointwise(model.out)
        self.u_up, self.u_down = [None] * S, [None] * S  # per scale: u's values at its current row [n, F, 1, W_s]
        self.u_out = [None] * S  # per scale: u's down-path output row, for the finer scale's upsampling
        self.ul_out = [None] + [ref.new_zeros(n, F_, w_s) for w_s in widths[1:]]  # ul's down-path outputs, scales >= 1
        self.ul_row = None  # ul_in[0]'s part of ul at the current row (the row above): [n, F, W]

    def top_scale(self, i: int, j: int) -> int:
        """The coarsest scale with a position at pixel (i, j): the largest s < S with 2^s dividing i and j."""
        s = 0
        while s + 1 < self.S and (i | j) % (2 << s) == 0:
            s += 1
        return s

    def pixel_params(self, x, i, j):
        if j == 0:
            self.start_row(x, i)
        ul = self.ul_row[:, :, j]  # (n, F)
        if j:  # shift_right(ul_in[1](x)) at (i, j): ul_in[1] at (i, j - 1), rows i - 1 .. i
            v = with_ones(x[:, :, max(0, i - 1):i + 1, j - 1])  # (n, C + 1, 1 or 2)
            ul = torch.addmm(ul, v.flatten(1), self.first[v.shape[2]].t()) + self.first_bias
        top, skips, last = self.top_scale(i, j), [], []
        for s in range(top + 1):  # the way up: each block's concat-ELU input is kept for the way down
            r, c = i >> s, j >> s
            if s:
                ul = self.downsample[s - 1].output(r, c)
            skips.append([])
            for block in self.up[s]:
                ul, seen = block.at(r, c, ul)
                skips[-1].append(seen)
            last.append(ul)
            if s + 1 < self.S:
                self.downsample[s].slot(r, c).copy_(ul)
        for s in reversed(range(top + 1)):
            r, c, concat = i >> s, j >> s, skips[s]
            if s == self.S - 1:
                ul = last[s]
            else:  # ShiftedDeconv2d (down-right) at (r, c): the coarser scale's output at (r // 2, c // 2)
                ul = torch.addmm(self.deconv_bias[s], self.ul_out[s + 1][:, :, c // 2], self.deconv[s][r % 2, c % 2])
                concat.append(concat_elu(last[s]))  # (n, 2F): the one skip no block's slot holds
            for block in self.down[s]:
                ul, _ = block.at(r, c, ul, concat.pop())
            if s:  # for the finer scale's upsampling
                self.ul_out[s][:, :, c] = ul
        return F.linear(F.elu(ul), *self.head)  # (n, Q)

    def start_row(self, x, i):
        """At row i's first pixel, what is blind to row i: ul_in[0]'s part of ul, the down stream u at every
        scale whose row starts here (rows i >> s for s <= top_scale(i, 0)), and what of ul's row is known now."""
        m, n = self.model, x.shape[0]
        xp = F.pad(with_ones(x[:, :, max(0, i - 2):i]), (0, 0, 2 - min(i, 2), 0))  # rows i - 2 .. i - 1, zeros above
        if i == 0:  # shift_down's zero row above the image (not the convolutions' biases)
            u = x.new_zeros(n, m.config.hidden_channels, 1, self.W)
            self.ul_row = u[:, :, 0]
        else:  # shift_down(u_in(xp)) and shift_down(ul_in[0](xp)) at row i: their rows i - 1
            u = _band_conv(m.u_in, xp)
            self.ul_row = _band_conv(m.ul_in[0], xp[:, :, 1:])[:, :, 0]  # (n, F, W)
        top = self.top_scale(i, 0)
        for s in range(top + 1):
            r = i >> s
            if s:
                u = self.band(m.downsample[s - 1][0], r)
            self.u_up[s] = [u]
            for block in m.up[s]:
                u = self.u_resnet(block.u, u, None, r)
                self.u_up[s].append(u)
            if s + 1 < self.S:
                self.keep(m.downsample[s][0], r, u)
        for s in reversed(range(top + 1)):
            r, skips = i >> s, list(self.u_up[s])
            if s == self.S - 1:
                u = skips.pop()
            else:
                u = _deconv_row(m.upsample[s][0], self.u_out[s + 1], r, self.widths[s])
            self.u_down[s] = []
            for block in m.down[s]:
                u = self.u_resnet(block.u, u, skips.pop(), r)
                self.u_down[s].append(u)
            self.u_out[s] = u
        for s in range(top + 1):  # ul's row r at scale s: what it reads of the row above and of u
            r = i >> s
            for k, block in enumerate(self.up[s]):
                block.start_row(r, self.u_up[s][k + 1])
            for k, block in enumerate(self.down[s]):
                block.start_row(r, self.u_down[s][k])
            if s:
                self.downsample[s - 1].start_row(r)

    def u_resnet(self, R, x, aux, r):
        """GatedResnet.forward of the u stream on row r: x [n, F, 1, W_s]."""
        self.keep(R.conv1, r, concat_elu(x))
        t = self.band(R.conv1, r)
        if R.aux is not None:
            t = t + R.aux(concat_elu(aux))
        self.keep(R.conv2, r, R.dropout(concat_elu(t)))
        a, b = self.band(R.conv2, r).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)

    def keep(self, M, r, row):
        """Store row r [n, in, 1, W_s] of M's input (the last three are kept)."""
        seen = self.rows.setdefault(M, {})
        seen[r] = row
        seen.pop(r - 3, None)

    def band(self, M, r_out):
        """M's output row r_out [n, out, 1, W'] from its stored input rows s r_out - kh + 1 .. s r_out."""
        seen = self.rows[M]
        kh, s = M.kernel_size[0], M.stride[0]
        rows = range(s * r_out - kh + 1, s * r_out + 1)
        any_row = seen[s * r_out]
        return _band_conv(M, torch.cat([seen[r] if r >= 0 else torch.zeros_like(any_row) for r in rows], dim=2))


class _RowWindow:
    """A 2x2 down-right-shifted convolution M (stride s = 1 or 2) of the ul stream, one output position at a time.

    Output (r, c) reads input rows s r - 1 and s r at columns s c - 1 .. s c. The row above is complete when output
    row r starts, so its part of the whole output row (and the bias, and any ``extra`` known then) is computed at
    once (``start_row``: one matrix product); each position then adds the current row's part (``output``: one
    addmm of the two input columns against the kernel's lower row). The input's last two rows are kept channels
    last, flattened, a zero column on the left, row q in slot q % 2: [2, n, (1 + W_in) in]; a position's input is
    written in place (``slot``)."""

    def __init__(self, M: ShiftedConv2d, n: int, W_in: int, W_out: int, halves: bool = False):
        w = M.weight  # (out, in, 2, 2)
        out_channels, self.c_in = w.shape[:2]
        # kernel row kh as a matrix [(kw, in) flattened, out], matching two adjacent channels-last input columns
        self.upper, self.lower = (w[:, :, kh].permute(2, 1, 0).reshape(2 * self.c_in, out_channels) for kh in (0, 1))
        self.bias, self.s, self.W_out = M.bias, M.stride[0], W_out
        self.buf = w.new_zeros(2, n, (1 + W_in) * self.c_in)
        self.known = None  # (n, W_out, out): the current output row's part known at its start
        # the views a position reads and writes, made once (a view costs as much as a small product to make)
        self.slots = [[self.buf[q, :, (c + 1) * self.c_in:(c + 2) * self.c_in] for c in range(W_in)] for q in (0, 1)]
        if halves:  # the same slots as [n, 2, in / 2], for a concat-ELU written into them
            self.halves = [[v.view(n, 2, -1) for v in row] for row in self.slots]
        start = [self.s * c * self.c_in for c in range(W_out)]
        self.windows = [[self.buf[q, :, a:a + 2 * self.c_in] for a in start] for q in (0, 1)]

    def slot(self, r: int, c: int) -> torch.Tensor:
        """The input at (r, c), [n, in], a view to write into."""
        return self.slots[r % 2][c]

    def start_row(self, r: int, extra: torch.Tensor | None = None) -> None:
        """Output row r begins: the row above's part, the bias and extra [n, W_out, out] for every position."""
        above = self.buf[(self.s * r - 1) % 2]  # (n, (1 + W_in) in)
        n = above.shape[0]
        windows = above.as_strided((n, self.W_out, 2 * self.c_in), (above.stride(0), self.s * self.c_in, 1))
        # one matrix product on a contiguous copy (a batched product over the strided windows runs per image)
        known = torch.addmm(self.bias, windows.reshape(n * self.W_out, -1), self.upper).view(n, self.W_out, -1)
        self.known = known if extra is None else known + extra

    def output(self, r: int, c: int) -> torch.Tensor:
        """The output at (r, c), [n, out], once the input at (s r, s c) is in its slot."""
        return torch.addmm(self.known[:, c], self.windows[self.s * r % 2][c], self.lower)


class _ULBlock:
    """One gated block of the ul stream (``GatedResnet``) at one position: x [n, F] -> [n, F], both its 2x2
    convolutions as ``_RowWindow``s. Its auxiliary input's u part ([u, skip] on the way down, u on the way up) is a
    row of the u stream, known when the row starts: its 1x1 product joins the first convolution's known part. The
    concat-ELU of an input is written straight into its window's slot; the way down reads its skip's there."""

    def __init__(self, R: GatedResnet, n: int, W: int, sign: torch.Tensor, skip: bool):
        self.conv1, self.conv2 = _RowWindow(R.conv1, n, W, W, True), _RowWindow(R.conv2, n, W, W, True)
        w, self.aux_bias = pointwise(R.aux)  # (F, 2A): concat_elu([u, skip]) = elu([u, skip, -u, -skip])
        F_ = w.shape[0]
        self.aux_u = torch.cat([w[:, :F_], w[:, 2 * F_:3 * F_]], 1).t() if skip else w.t()  # (2F, F)
        self.aux_skip = torch.cat([w[:, F_:2 * F_], w[:, 3 * F_:]], 1).t() if skip else None
        self.sign, self.F, self.dropout = sign, F_, R.dropout

    def concat_elu_into(self, window: _RowWindow, r: int, c: int, x: torch.Tensor) -> torch.Tensor:
        """concat_elu(x) written into window's slot (r, c) -> that slot [n, 2F]."""
        torch.mul(x.unsqueeze(1), self.sign, out=window.halves[r % 2][c])
        return F.elu_(window.slots[r % 2][c])

    def start_row(self, r: int, u: torch.Tensor) -> None:
        """Row r of the u stream at this block, u [n, F, 1, W]."""
        n, _, _, W = u.shape
        concat = concat_elu(u)[:, :, 0].transpose(1, 2).reshape(n * W, -1)  # (n W, 2F)
        self.conv1.start_row(r, torch.addmm(self.aux_bias, concat, self.aux_u).view(n, W, -1))
        self.conv2.start_row(r)

    def at(self, r: int, c: int, x: torch.Tensor, skip: torch.Tensor | None = None):
        """The block at (r, c): x [n, F], skip: concat_elu of the way up's value [n, 2F] (way down) ->
        (its output [n, F], concat_elu(x) [n, 2F], kept until row r + 2 overwrites it)."""
        seen = self.concat_elu_into(self.conv1, r, c, x)
        t = self.conv1.output(r, c)
        if skip is not None:
            t = torch.addmm(t, skip, self.aux_skip)
        inner = self.concat_elu_into(self.conv2, r, c, t)
        if self.dropout.training and self.dropout.p > 0:
            inner.copy_(self.dropout(inner))
        gate = self.conv2.output(r, c)  # (n, 2F): [a, b]
        return torch.addcmul(x, gate[:, :self.F], torch.sigmoid(gate[:, self.F:])), seen


def _deconv_row(M: ShiftedDeconv2d, t: torch.Tensor, R: int, W: int) -> torch.Tensor:
    """Row R of a ShiftedDeconv2d's output (W wide) from its input's row R // 2, t [n, in, 1, w] -> [n, out, 1, W]."""
    return F.conv_transpose2d(t, M.weight, M.bias, stride=2)[:, :, R % 2:R % 2 + 1, M.left:M.left + W]


def _band_conv(M: ShiftedConv2d, band: torch.Tensor) -> torch.Tensor:
    """One output row of a shifted convolution from the kh input rows it reads: [n, in, kh, W] -> [n, out, 1, W']."""
    left, right = M.pad[0], M.pad[1]
    return F.conv2d(F.pad(band, (left, right, 0, 0)), M.weight, M.bias, stride=(1, M.stride[1]))
